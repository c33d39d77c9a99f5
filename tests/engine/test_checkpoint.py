"""Spec 10: checkpoints as JSON, resuming on a new instance, format checks, reused contexts."""

import asyncio
import json
from typing import Any

import pytest

from engine import (
    CheckpointError,
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    RunStatus,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    step,
)

from .helpers import RecordingListener, collect_stream, outcome, wait_until


class SavedNote(Event):
    text: str
    tags: list[str]


class ApprovalWorkflow(Workflow):
    @step
    async def prepare(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit() as state:
            state["order"] = {"id": ev.order_id, "items": ev.items}
            state["attempts"] = state.get("attempts", 0) + 1
        await ctx.store.set("note", SavedNote(text="keep me", tags=["a", "b"]))
        answer = await ctx.wait_for_event(
            HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="Approve?"), timeout=60
        )
        order = await ctx.store.get("order")
        note = await ctx.store.get("note")
        return StopEvent(
            result={
                "order": order,
                "answer": answer.response,
                "note": [type(note).__name__, note.text, note.tags],
            }
        )


class AskEvent(InputRequiredEvent):
    question: str


class ReplyEvent(HumanResponseEvent):
    reply: str


class ReturnedAskWorkflow(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> AskEvent:
        await ctx.store.set("topic", ev.topic)
        return AskEvent(question=f"{ev.topic}?")

    @step
    async def answered(self, ctx: Context, ev: ReplyEvent) -> StopEvent:
        return StopEvent(result=(await ctx.store.get("topic"), ev.reply))


class JobEvent(Event):
    n: int


class JobResult(Event):
    n: int
    square: int


class PipelineWorkflow(Workflow):
    """A start step fans out jobs to a 2-worker step; a collector sums the squares."""

    JOBS = 10

    @step
    async def fan_out(self, ctx: Context, ev: StartEvent) -> JobEvent | None:
        for n in range(self.JOBS):
            ctx.send_event(JobEvent(n=n))
        return None

    @step(num_workers=2)
    async def square(self, ctx: Context, ev: JobEvent) -> JobResult:
        await asyncio.sleep(0.01)
        async with ctx.store.edit() as state:
            state["squared"] = [*state.get("squared", []), ev.n]
        return JobResult(n=ev.n, square=ev.n * ev.n)

    @step
    async def total(self, ctx: Context, ev: JobResult) -> StopEvent | None:
        got = ctx.collect_events(ev, [JobResult] * self.JOBS)
        if got is None:
            return None
        return StopEvent(result=sorted((r.n, r.square) for r in got))


class CountingWorkflow(Workflow):
    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit() as state:
            state["runs"] = state.get("runs", 0) + 1
            state.setdefault("history", []).append(ev.tag)
        return StopEvent(result=await ctx.store.get("runs"))


class OtherWorkflow(Workflow):
    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        return StopEvent()


class AnsweredThenBusyWorkflow(Workflow):
    """Gets its answer, then stays busy (on the first instance only)."""

    def __init__(self, busy: bool, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.busy = busy

    @step
    async def ask_then_work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="?")
        )
        await ctx.store.set("answered", True)
        if self.busy:
            await asyncio.sleep(5)
        return StopEvent(result=answer.response)


class EditInFlightWorkflow(Workflow):
    """Checkpointed while one step is inside an edit() block (on the first instance)."""

    def __init__(self, hold: bool, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.hold = hold
        self.editing = False

    @step
    async def bump_once(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit() as state:
            state["count"] = state.get("count", 0) + 1
            self.editing = True
            if self.hold:
                await asyncio.sleep(5)
        return StopEvent(result=await ctx.store.get("count"))


def through_json(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data))


async def waiting_checkpoint() -> dict[str, Any]:
    """Start an ApprovalWorkflow run, checkpoint it while it waits, cancel it."""
    handler = ApprovalWorkflow().run(order_id=42, items=["x", "y"])
    await wait_until(lambda: handler.status is RunStatus.WAITING_FOR_INPUT)
    data = handler.ctx.to_dict()
    text = json.dumps(data)  # JSON-serialisable while waiting for input
    handler.cancel_run()
    assert isinstance(await outcome(handler), WorkflowCancelledError)
    return json.loads(text)


async def test_checkpoint_while_waiting_is_json_and_resumes_on_a_new_instance() -> None:
    data = await waiting_checkpoint()
    assert data["status"] == "WAITING_FOR_INPUT"
    assert data["store"]["order"] == {"id": 42, "items": ["x", "y"]}
    assert [w["step"] for w in data["works"]] == ["prepare"]

    wf = ApprovalWorkflow()  # a new instance
    ctx = Context.from_dict(wf, data)
    handler = wf.run(ctx=ctx)
    await wait_until(lambda: handler.status is RunStatus.WAITING_FOR_INPUT)
    handler.ctx.send_event(HumanResponseEvent(response="approved"))
    result = await asyncio.wait_for(handler, 1)
    assert result == {
        "order": {"id": 42, "items": ["x", "y"]},
        "answer": "approved",
        "note": ["SavedNote", "keep me", ["a", "b"]],
    }
    assert handler.status is RunStatus.SUCCEEDED
    # The store came back, and the waiting step ran again (steps are at-least-once).
    assert await handler.ctx.store.get("attempts") == 2
    events = await collect_stream(handler)
    assert [type(e).__name__ for e in events] == ["InputRequiredEvent", "StopEvent"]


async def test_answer_sent_right_after_resume_is_not_lost() -> None:
    data = await waiting_checkpoint()
    wf = ApprovalWorkflow()
    handler = wf.run(ctx=Context.from_dict(wf, data))
    handler.ctx.send_event(HumanResponseEvent(response="fast"))
    result = await asyncio.wait_for(handler, 1)
    assert result["answer"] == "fast"


async def test_resumed_run_tells_the_listener_it_resumed() -> None:
    data = await waiting_checkpoint()
    wf = ApprovalWorkflow()
    listener = RecordingListener()
    handler = wf.start_run(ctx=Context.from_dict(wf, data), listener=listener)
    await wait_until(lambda: handler.status is RunStatus.WAITING_FOR_INPUT)
    handler.ctx.send_event(HumanResponseEvent(response="ok"))
    await asyncio.wait_for(handler, 1)
    assert listener.calls[0] == ("run_started", None)
    # The re-run invocation keeps its number from before the checkpoint.
    assert [c[2] for c in listener.of("step_started")] == [data["works"][0]["id"]]


async def test_checkpoint_of_returned_input_required_event_resumes() -> None:
    handler = ReturnedAskWorkflow().run(topic="deploy")
    await wait_until(lambda: handler.status is RunStatus.WAITING_FOR_INPUT)
    data = through_json(handler.ctx.to_dict())
    handler.cancel_run()
    await outcome(handler)

    wf = ReturnedAskWorkflow()
    resumed = wf.run(ctx=Context.from_dict(wf, data))
    await wait_until(lambda: resumed.status is RunStatus.WAITING_FOR_INPUT)
    await asyncio.sleep(0.01)
    assert not resumed.done()
    resumed.ctx.send_event(ReplyEvent(reply="go"))
    assert await asyncio.wait_for(resumed, 1) == ("deploy", "go")


async def test_checkpoint_with_work_queued_and_in_flight_resumes_to_the_right_result() -> None:
    handler = PipelineWorkflow().run()
    await wait_until(lambda: len(handler.ctx.store.to_dict().get("squared", [])) >= 3)
    data = through_json(handler.ctx.to_dict())
    handler.cancel_run()
    await outcome(handler)

    done_before = data["store"]["squared"]
    assert 3 <= len(done_before) < PipelineWorkflow.JOBS
    pending = [w["event"]["data"]["n"] for w in data["works"] if w["step"] == "square"]
    assert len(pending) > 2  # two in flight and more queued
    assert sorted(done_before + pending) == list(range(PipelineWorkflow.JOBS))
    # Every finished job's result is either in the collect buffer or on its way to `total`.
    to_total = [w["event"]["data"]["n"] for w in data["works"] if w["step"] == "total"]
    collected = [e["data"]["n"] for v in data["collect"].values() for e in v]
    assert sorted(collected + to_total) == sorted(done_before)

    wf = PipelineWorkflow()
    resumed = wf.run(ctx=Context.from_dict(wf, data))
    result = await asyncio.wait_for(resumed, 2)
    assert result == [(n, n * n) for n in range(PipelineWorkflow.JOBS)]
    # Every job was squared exactly once across the two runs.
    assert sorted(await resumed.ctx.store.get("squared")) == list(range(PipelineWorkflow.JOBS))


async def test_event_a_wait_already_received_is_kept_for_the_rerun() -> None:
    handler = AnsweredThenBusyWorkflow(busy=True).run()
    await wait_until(lambda: handler.status is RunStatus.WAITING_FOR_INPUT)
    handler.ctx.send_event(HumanResponseEvent(response="given once"))
    await wait_until(lambda: handler.ctx.store.to_dict().get("answered") is True)
    data = through_json(handler.ctx.to_dict())
    handler.cancel_run()
    await outcome(handler)
    (work,) = data["works"]
    assert [e["data"]["response"] for e in work["received"]] == ["given once"]

    wf = AnsweredThenBusyWorkflow(busy=False)
    resumed = wf.run(ctx=Context.from_dict(wf, data))
    # No second answer is sent: the re-run's wait gets the one it had received.
    assert await asyncio.wait_for(resumed, 1) == "given once"


async def test_checkpoint_taken_during_an_edit_block_holds_committed_state() -> None:
    wf = EditInFlightWorkflow(hold=True)
    handler = wf.run()
    await wait_until(lambda: wf.editing)
    data = through_json(handler.ctx.to_dict())
    handler.cancel_run()
    await outcome(handler)
    assert handler.ctx.store.to_dict() == {}  # the live store rolled the edit back

    wf2 = EditInFlightWorkflow(hold=False)
    resumed = wf2.run(ctx=Context.from_dict(wf2, data))
    assert await asyncio.wait_for(resumed, 1) == 1
    assert data["store"].get("count") is None


def test_wrong_checkpoint_format_version_is_rejected() -> None:
    wf = CountingWorkflow()
    data = through_json(Context(wf).to_dict())
    assert data["format"] == 1
    data["format"] = 999
    with pytest.raises(CheckpointError, match="999"):
        Context.from_dict(wf, data)
    del data["format"]
    with pytest.raises(CheckpointError):
        Context.from_dict(wf, data)


def test_checkpoint_of_another_workflow_is_rejected() -> None:
    data = through_json(Context(OtherWorkflow()).to_dict())
    with pytest.raises(CheckpointError, match="OtherWorkflow"):
        Context.from_dict(CountingWorkflow(), data)


async def test_non_json_state_cannot_be_checkpointed() -> None:
    ctx = Context(CountingWorkflow())
    await ctx.store.set("bad", {1, 2, 3})
    with pytest.raises(CheckpointError, match="bad"):
        ctx.to_dict()


async def test_context_of_a_finished_run_keeps_its_store_for_the_next_run() -> None:
    wf = CountingWorkflow()
    first = wf.run(tag="a")
    assert await first == 1
    second = wf.run(ctx=first.ctx, tag="b")
    assert second.ctx is first.ctx
    assert await second == 2
    assert await second.ctx.store.get("history") == ["a", "b"]


async def test_checkpoint_of_a_finished_run_starts_a_new_run_with_its_store() -> None:
    wf = CountingWorkflow()
    first = wf.run(tag="a")
    await first
    data = through_json(first.ctx.to_dict())
    assert data["works"] == []
    wf2 = CountingWorkflow()
    again = wf2.run(ctx=Context.from_dict(wf2, data), tag="b")
    assert await again == 2
    assert await again.ctx.store.get("history") == ["a", "b"]
