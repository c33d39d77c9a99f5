"""Spec 9: the RunListener hears the run's lifecycle, in order."""

import asyncio
import gc
from typing import Any

import pytest

from engine import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    RunListener,
    RunStatus,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowHandler,
    WorkflowTimeoutError,
    step,
)

from .helpers import RecordingListener, outcome, wait_until


class NoteEvent(Event):
    i: int


class MidEvent(Event):
    pass


class ChunkEvent(Event):
    name: str


class ChunkDone(Event):
    pass


class NarratingWorkflow(Workflow):
    @step
    async def narrate(self, ctx: Context, ev: StartEvent) -> MidEvent:
        for i in (1, 2, 3):
            ctx.write_event_to_stream(NoteEvent(i=i))
        await asyncio.sleep(0.001)
        return MidEvent()

    @step
    async def conclude(self, ev: MidEvent) -> StopEvent:
        return StopEvent(result="fin")


class TwoInvocationsWorkflow(Workflow):
    @step
    async def split(self, ctx: Context, ev: StartEvent) -> ChunkEvent | None:
        ctx.send_event(ChunkEvent(name="a"))
        ctx.send_event(ChunkEvent(name="b"))
        return None

    @step
    async def chunk(self, ctx: Context, ev: ChunkEvent) -> ChunkDone:
        for i in (1, 2, 3):
            ctx.write_event_to_stream(NoteEvent(i=i))
            await asyncio.sleep(0)
        return ChunkDone()

    @step
    async def join(self, ctx: Context, ev: ChunkDone) -> StopEvent | None:
        if ctx.collect_events(ev, [ChunkDone, ChunkDone]) is None:
            return None
        return StopEvent(result="joined")


class RetryOnceWorkflow(Workflow):
    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.calls = 0

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=3, delay=0.01))
    async def wobbly(self, ctx: Context, ev: StartEvent) -> StopEvent:
        self.calls += 1
        writes = 2 if self.calls == 1 else 3
        for i in range(writes):
            ctx.write_event_to_stream(NoteEvent(i=i))
        await asyncio.sleep(0.01)
        if self.calls == 1:
            raise ValueError("first attempt fails")
        return StopEvent(result=self.calls)


class AskingWorkflow(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="Approve?"), timeout=60
        )
        return StopEvent(result=answer.response)


class QuestionEvent(InputRequiredEvent):
    pass


class ReplyEvent(HumanResponseEvent):
    pass


class ReturnedQuestionWorkflow(Workflow):
    @step
    async def question(self, ev: StartEvent) -> QuestionEvent:
        return QuestionEvent(text="ok?")

    @step
    async def reply(self, ev: ReplyEvent) -> StopEvent:
        return StopEvent(result=ev.text)


class FailingWorkflow(Workflow):
    @step
    async def fail_now(self, ev: StartEvent) -> StopEvent:
        raise KeyError("nope")


class BlockingWorkflow(Workflow):
    @step
    async def block(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(5)
        return StopEvent()


class ElapsedRecorder:
    """A retry policy that records the elapsed_time it is given."""

    def __init__(self) -> None:
        self.elapsed: list[float] = []

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        self.elapsed.append(elapsed_time)
        return 0.05 if attempts < 2 else None


ELAPSED = ElapsedRecorder()


class ElapsedWorkflow(Workflow):
    @step(retry_policy=ELAPSED)
    async def slow_failure(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(0.02)
        raise ValueError("always")


def without_terminal_status(calls: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Calls, leaving out status_changed to a terminal status (tested on its own below)."""
    return [c for c in calls if not (c[0] == "status_changed" and c[1].is_terminal)]


async def test_listener_hears_a_successful_run_in_order() -> None:
    listener = RecordingListener()
    start = StartEvent(topic="t")
    handler = NarratingWorkflow().start_run(start, listener=listener)
    assert await handler == "fin"
    calls = without_terminal_status(listener.calls)
    assert [c[0] for c in calls] == [
        "run_started",
        "event_sent",
        "step_started",
        "stream_event",
        "stream_event",
        "stream_event",
        "step_finished",
        "event_sent",
        "step_started",
        "step_finished",
        "event_sent",
        "stream_event",
        "run_finished",
    ]
    assert calls[0] == ("run_started", start)
    assert calls[1] == ("event_sent", start, None)
    assert calls[2] == ("step_started", "narrate", 1, 1, start)
    notes = listener.of("stream_event")[:3]
    assert [(c[1].i, c[2], c[3], c[4]) for c in notes] == [
        (1, "narrate", 1, 1),
        (2, "narrate", 1, 2),
        (3, "narrate", 1, 3),
    ]
    _, step, inv, attempt, duration, result, error = calls[6]
    assert (step, inv, attempt, error) == ("narrate", 1, 1, None)
    assert isinstance(result, MidEvent)
    assert duration >= 0.001
    assert calls[7] == ("event_sent", result, "narrate")
    assert calls[8][:4] == ("step_started", "conclude", 2, 1)
    stop = calls[9][5]
    assert isinstance(stop, StopEvent)
    assert calls[9][6] is None
    assert calls[9][4] >= 0
    assert calls[10] == ("event_sent", stop, "conclude")
    assert calls[11] == ("stream_event", stop, "conclude", 2, 1)
    assert calls[12] == ("run_finished", RunStatus.SUCCEEDED, "fin", None)


async def test_stream_index_counts_per_invocation() -> None:
    listener = RecordingListener()
    handler = TwoInvocationsWorkflow().start_run(StartEvent(), listener=listener)
    assert await handler == "joined"
    notes = [c for c in listener.of("stream_event") if isinstance(c[1], NoteEvent)]
    by_invocation: dict[int, list[int]] = {}
    for _, _, step_name, invocation, index in notes:
        assert step_name == "chunk"
        by_invocation.setdefault(invocation, []).append(index)
    assert len(by_invocation) == 2
    assert all(indexes == [1, 2, 3] for indexes in by_invocation.values())
    # Invocation ids match those of step_started.
    chunk_ids = {c[2] for c in listener.of("step_started") if c[1] == "chunk"}
    assert chunk_ids == set(by_invocation)


async def test_listener_hears_attempts_of_a_retried_step() -> None:
    listener = RecordingListener()
    handler = RetryOnceWorkflow().start_run(StartEvent(), listener=listener)
    assert await handler == 2
    steps = [c for c in listener.calls if c[0] in ("step_started", "step_finished")]
    assert [(c[0], c[1], c[2], c[3]) for c in steps] == [
        ("step_started", "wobbly", 1, 1),
        ("step_finished", "wobbly", 1, 1),
        ("step_started", "wobbly", 1, 2),
        ("step_finished", "wobbly", 1, 2),
    ]
    first, second = steps[1], steps[3]
    assert first[4] >= 0.009 and second[4] >= 0.009
    assert first[5] is None and isinstance(first[6], ValueError)
    assert isinstance(second[5], StopEvent) and second[6] is None
    # The second attempt writes its stream events again, numbered from 1.
    indexes = [c[4] for c in listener.of("stream_event") if isinstance(c[1], NoteEvent)]
    assert indexes == [1, 2, 1, 2, 3]
    assert listener.calls[-1][:2] == ("run_finished", RunStatus.SUCCEEDED)


async def test_listener_hears_input_required_and_status_changes() -> None:
    listener = RecordingListener()
    handler = AskingWorkflow().start_run(StartEvent(), listener=listener)
    await wait_until(lambda: handler.status is RunStatus.WAITING_FOR_INPUT)
    handler.ctx.send_event(HumanResponseEvent(response="yes"))
    assert await handler == "yes"
    calls = without_terminal_status(listener.calls)
    assert [c[0] for c in calls] == [
        "run_started",
        "event_sent",
        "step_started",
        "stream_event",
        "input_required",
        "status_changed",
        "event_sent",
        "status_changed",
        "step_finished",
        "event_sent",
        "stream_event",
        "run_finished",
    ]
    request = calls[3][1]
    assert isinstance(request, InputRequiredEvent)
    assert calls[3][2:] == ("ask", 1, 1)
    assert calls[4] == ("input_required", request, "ask")
    assert calls[5] == ("status_changed", RunStatus.WAITING_FOR_INPUT)
    assert calls[6][2] is None  # sent from outside
    assert isinstance(calls[6][1], HumanResponseEvent)
    assert calls[7] == ("status_changed", RunStatus.RUNNING)
    assert calls[10][2:] == ("ask", 1, 2)
    assert calls[11] == ("run_finished", RunStatus.SUCCEEDED, "yes", None)


async def test_listener_hears_a_returned_input_required_event() -> None:
    listener = RecordingListener()
    handler = ReturnedQuestionWorkflow().start_run(StartEvent(), listener=listener)
    await wait_until(lambda: handler.status is RunStatus.WAITING_FOR_INPUT)
    handler.ctx.send_event(ReplyEvent(text="sure"))
    assert await handler == "sure"
    kinds = [c[0] for c in without_terminal_status(listener.calls)]
    i = kinds.index("input_required")
    assert kinds[i - 1] == "stream_event"
    assert kinds[i + 1] == "status_changed"
    asked = listener.of("input_required")[0]
    assert isinstance(asked[1], QuestionEvent)
    assert asked[2] == "question"
    assert listener.of("status_changed")[:2] == [
        ("status_changed", RunStatus.WAITING_FOR_INPUT),
        ("status_changed", RunStatus.RUNNING),
    ]


async def test_listener_hears_a_failed_run() -> None:
    listener = RecordingListener()
    handler = FailingWorkflow().start_run(StartEvent(), listener=listener)
    err = await outcome(handler)
    last = listener.calls[-1]
    assert last[:3] == ("run_finished", RunStatus.FAILED, None)
    assert last[3] is err
    assert isinstance(err, StepFailedError)
    finished = listener.of("step_finished")[0]
    assert isinstance(finished[6], KeyError)


async def test_a_failed_runs_error_heard_by_its_listener_is_not_reported_unretrieved() -> None:
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        listener = RecordingListener()
        handler = FailingWorkflow().start_run(StartEvent(), listener=listener)
        await wait_until(handler.done)
        assert listener.calls[-1][:2] == ("run_finished", RunStatus.FAILED)
        del handler, listener  # the listener's record holds the handler too
        gc.collect()  # a future with an unread error reports it when it is collected
    finally:
        loop.set_exception_handler(None)
    assert reported == []
    # Without a listener nobody has heard it, and asyncio reports it as usual.
    handler = FailingWorkflow().start_run(StartEvent())
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        await wait_until(handler.done)
        del handler
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert [type(c.get("exception")) for c in reported] == [StepFailedError]


async def test_listener_hears_a_cancelled_run_and_nothing_after() -> None:
    listener = RecordingListener()
    handler = BlockingWorkflow().start_run(StartEvent(), listener=listener)
    await wait_until(lambda: bool(listener.of("step_started")))
    handler.cancel_run()
    err = await outcome(handler)
    assert isinstance(err, WorkflowCancelledError)
    await asyncio.sleep(0.01)
    assert listener.kinds("status_changed") == [
        "run_started",
        "event_sent",
        "step_started",
        "run_finished",
    ]
    assert listener.calls[-1][:3] == ("run_finished", RunStatus.CANCELLED, None)
    assert isinstance(listener.calls[-1][3], WorkflowCancelledError)


async def test_listener_hears_a_timed_out_run() -> None:
    listener = RecordingListener()
    handler = BlockingWorkflow().start_run(StartEvent(), listener=listener, timeout=0.05)
    err = await outcome(handler)
    assert isinstance(err, WorkflowTimeoutError)
    assert listener.calls[-1][:2] == ("run_finished", RunStatus.TIMED_OUT)
    assert listener.calls[-1][3] is err


async def test_default_listener_methods_do_nothing() -> None:
    handler = NarratingWorkflow().start_run(StartEvent(), listener=RunListener())
    assert await handler == "fin"


async def test_status_changed_reports_the_terminal_status() -> None:
    listener = RecordingListener()
    handler = NarratingWorkflow().start_run(StartEvent(), listener=listener)
    await handler
    assert listener.of("status_changed")[-1:] == [("status_changed", RunStatus.SUCCEEDED)]
    assert listener.kinds()[-2:] == ["status_changed", "run_finished"]


@pytest.mark.parametrize(
    "with_listener",
    [
        False,
        True,
    ],
)
async def test_retry_policy_elapsed_time_counts_from_the_first_attempt(
    with_listener: bool,
) -> None:
    ELAPSED.elapsed.clear()
    listener = RecordingListener() if with_listener else None
    err = await asyncio.wait_for(
        outcome(ElapsedWorkflow().start_run(StartEvent(), listener=listener)), 1
    )
    assert isinstance(err, StepFailedError)
    first, second = ELAPSED.elapsed
    assert first >= 0.019
    # Two 20 ms attempts and a 50 ms delay have passed by the second failure.
    assert second >= first + 0.06, ELAPSED.elapsed


class CheckpointingListener(RunListener):
    """Takes a checkpoint whenever a step completes, as a durable host does."""

    def __init__(self) -> None:
        self.checkpoints: list[tuple[str, dict[str, Any]]] = []

    def step_completed(self, run: WorkflowHandler, step: str, invocation: int) -> None:
        self.checkpoints.append((step, run.ctx.to_dict()))


async def test_step_completed_comes_after_the_result_is_dispatched() -> None:
    listener = CheckpointingListener()
    handler = NarratingWorkflow().start_run(StartEvent(), listener=listener)
    assert await handler == "fin"
    first_step, after_first = listener.checkpoints[0]
    # The first step's returned event already waits, queued or in flight, for the next.
    assert [w["event"]["type"] for w in after_first["works"]] == ["MidEvent"]
    assert first_step == "narrate"
    # The last step's StopEvent ended the run: no checkpoint is taken after it.
    assert len(listener.checkpoints) == 1
