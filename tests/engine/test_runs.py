"""Spec 3: handlers, streaming, cancellation, outside events, many independent runs."""

import asyncio

import pytest

from engine import (
    Context,
    Event,
    RunStatus,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowHandler,
    WorkflowNotRunningError,
    WorkflowRuntimeError,
    step,
)
from engine.run import Run, Work
from engine.testing import WorkflowTestRunner

from ..cycles import cycle_garbage
from .helpers import RecordingListener, collect_stream, other_tasks, outcome


class ProgressEvent(Event):
    pct: int


class MidEvent(Event):
    pass


class OutsidePing(Event):
    value: int


class StreamingWorkflow(Workflow):
    @step
    async def work(self, ctx: Context, ev: StartEvent) -> MidEvent:
        for pct in (10, 50):
            ctx.write_event_to_stream(ProgressEvent(pct=pct))
            await asyncio.sleep(0.001)
        return MidEvent()

    @step
    async def finish(self, ctx: Context, ev: MidEvent) -> StopEvent:
        ctx.write_event_to_stream(ProgressEvent(pct=100))
        return StopEvent(result="done")


class SleepyWorkflow(Workflow):
    @step
    async def sleepy(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(ProgressEvent(pct=0))
        await asyncio.sleep(10)
        return StopEvent(result="never")


class PingSeen(Event):
    by: str
    value: int


class OutsideEventWorkflow(Workflow):
    external_events = (OutsidePing,)

    @step
    async def idle(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(10)
        return StopEvent(result="timed")

    @step
    async def on_ping(self, ev: OutsidePing) -> PingSeen:
        return PingSeen(by="on_ping", value=ev.value)

    @step
    async def other_ping(self, ev: OutsidePing) -> PingSeen:
        return PingSeen(by="other_ping", value=ev.value)

    @step
    async def gather_pings(self, ctx: Context, ev: PingSeen) -> StopEvent | None:
        got = ctx.collect_events(ev, [PingSeen, PingSeen])
        if got is None:
            return None
        return StopEvent(result=sorted((e.by, e.value) for e in got))


class StatefulEvent(Event):
    pass


class IndependentRunsWorkflow(Workflow):
    """The result depends on the run's own input and on its own ctx.store."""

    @step
    async def remember(self, ctx: Context, ev: StartEvent) -> StatefulEvent:
        await ctx.store.set("n", ev.n)
        await ctx.store.set("trace", [ev.n])
        # Interleave runs in different orders.
        await asyncio.sleep(0.001 * (ev.n % 7))
        return StatefulEvent()

    @step
    async def compute(self, ctx: Context, ev: StatefulEvent) -> StopEvent:
        n = await ctx.store.get("n")
        async with ctx.store.edit() as state:
            state["visits"] = state.get("visits", 0) + 1
            state["trace"].append(n * n)
        await asyncio.sleep(0)
        return StopEvent(result=(n, await ctx.store.get("trace"), await ctx.store.get("visits")))


async def test_handler_is_awaitable_and_exposes_the_run() -> None:
    handler = StreamingWorkflow().run()
    assert isinstance(handler, WorkflowHandler)
    assert isinstance(handler, asyncio.Future)
    assert handler.status is RunStatus.RUNNING
    assert handler.run_id
    assert await handler == "done"
    assert handler.status is RunStatus.SUCCEEDED
    assert handler.done()
    # Awaiting again gives the same result.
    assert await handler == "done"


async def test_stream_yields_written_events_then_stop_event_then_ends() -> None:
    handler = StreamingWorkflow().run()
    events = await asyncio.wait_for(collect_stream(handler), 2)
    assert [type(e) for e in events] == [ProgressEvent] * 3 + [StopEvent]
    assert [e.pct for e in events[:3]] == [10, 50, 100]
    assert events[-1].result == "done"
    assert await handler == "done"


async def test_two_consumers_of_one_handler_both_see_every_event() -> None:
    handler = StreamingWorkflow().run()
    first, second = await asyncio.wait_for(
        asyncio.gather(collect_stream(handler), collect_stream(handler)), 2
    )
    assert first == second
    assert [type(e).__name__ for e in first] == ["ProgressEvent"] * 3 + ["StopEvent"]


async def test_a_consumer_that_starts_late_still_sees_every_event() -> None:
    handler = StreamingWorkflow().run()
    await handler
    events = await collect_stream(handler)
    assert [type(e).__name__ for e in events] == ["ProgressEvent"] * 3 + ["StopEvent"]


async def test_cancel_run_ends_the_run_with_cancelled_error() -> None:
    before = other_tasks()
    handler = SleepyWorkflow().run()
    stream = handler.stream_events()
    first = await asyncio.wait_for(anext(stream), 1)
    assert isinstance(first, ProgressEvent)
    handler.cancel_run()
    err = await asyncio.wait_for(outcome(handler), 1)
    assert isinstance(err, WorkflowCancelledError)
    assert handler.status is RunStatus.CANCELLED
    with pytest.raises(WorkflowCancelledError):
        await asyncio.wait_for(anext(stream), 1)
    assert other_tasks() <= before
    # The ended run accepts no more events.
    with pytest.raises(WorkflowNotRunningError):
        handler.ctx.send_event(ProgressEvent(pct=1))


async def test_send_event_from_outside_to_one_step() -> None:
    handler = OutsideEventWorkflow().run()
    await asyncio.sleep(0)
    handler.ctx.send_event(OutsidePing(value=5), step="on_ping")
    handler.ctx.send_event(OutsidePing(value=7), step="on_ping")
    assert await asyncio.wait_for(handler, 1) == [("on_ping", 5), ("on_ping", 7)]


async def test_send_event_from_outside_without_step_reaches_every_accepting_step() -> None:
    handler = OutsideEventWorkflow().run()
    await asyncio.sleep(0)
    handler.ctx.send_event(OutsidePing(value=5))
    assert await asyncio.wait_for(handler, 1) == [("on_ping", 5), ("other_ping", 5)]


async def test_send_event_rejects_unknown_or_non_accepting_step() -> None:
    handler = OutsideEventWorkflow().run()
    with pytest.raises(WorkflowRuntimeError, match="no_such_step"):
        handler.ctx.send_event(OutsidePing(value=1), step="no_such_step")
    with pytest.raises(WorkflowRuntimeError, match="idle"):
        handler.ctx.send_event(OutsidePing(value=1), step="idle")
    handler.cancel_run()
    assert isinstance(await outcome(handler), WorkflowCancelledError)


async def test_run_with_context_made_ahead() -> None:
    wf = IndependentRunsWorkflow()
    ctx = Context(wf)
    await ctx.store.set("visits", 10)
    handler = wf.run(ctx=ctx, n=3)
    assert handler.ctx is ctx
    assert await handler == (3, [3, 9], 11)


async def test_context_of_a_running_run_cannot_start_another() -> None:
    wf = SleepyWorkflow()
    handler = wf.run()
    with pytest.raises(WorkflowRuntimeError):
        wf.run(ctx=handler.ctx)
    handler.cancel_run()
    await outcome(handler)


async def test_thousand_concurrent_runs_of_one_instance_are_independent() -> None:
    wf = IndependentRunsWorkflow()
    handlers = [wf.run(n=i) for i in range(1000)]
    results = await asyncio.wait_for(asyncio.gather(*handlers), 10)
    assert results == [(i, [i, i * i], 1) for i in range(1000)]
    assert len({h.run_id for h in handlers}) == 1000
    assert len({id(h.ctx) for h in handlers}) == 1000
    assert all(h.status is RunStatus.SUCCEEDED for h in handlers)


async def test_stream_events_of_other_runs_are_not_mixed() -> None:
    wf = StreamingWorkflow()
    handlers = [wf.run() for _ in range(20)]
    streams = await asyncio.wait_for(asyncio.gather(*(collect_stream(h) for h in handlers)), 5)
    for events in streams:
        assert [getattr(e, "pct", None) for e in events] == [10, 50, 100, None]


async def test_retain_stream_false_refuses_stream_events() -> None:
    handler = StreamingWorkflow().start_run(StartEvent(), retain_stream=False)
    assert await handler == "done"
    with pytest.raises(WorkflowRuntimeError):
        await anext(handler.stream_events())


async def test_workflow_test_runner_collects_stream_and_result() -> None:
    run_result = await WorkflowTestRunner(StreamingWorkflow()).run()
    assert run_result.result == "done"
    assert run_result.event_types == {"ProgressEvent": 3, "StopEvent": 1}
    assert [getattr(e, "pct", None) for e in run_result.collected] == [10, 50, 100, None]


class SideEvent(Event):
    pass


class EndsBeforeItsSideStepStarts(Workflow):
    """``begin`` starts ``side`` and ends the run in the same loop turn: ``side``'s task is
    cancelled before it ever runs."""

    side_ran = False

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> StopEvent | SideEvent:
        ctx.send_event(SideEvent())
        return StopEvent(result="ended")

    @step
    async def side(self, ctx: Context, ev: SideEvent) -> None:
        EndsBeforeItsSideStepStarts.side_ran = True


async def test_a_run_ending_before_a_launched_step_starts_still_settles() -> None:
    handler = EndsBeforeItsSideStepStarts().run()
    assert await asyncio.wait_for(handler, 5) == "ended"
    assert not EndsBeforeItsSideStepStarts.side_ran
    await asyncio.sleep(0)
    assert other_tasks() == set()


async def test_a_finished_run_is_freed_without_the_cycle_collector() -> None:
    """A run that succeeded leaves no reference cycle among its run, context, handler and
    listener, so reference counting frees it as soon as nobody holds its handler."""
    await StreamingWorkflow().run()  # first-use imports and caches, outside the check
    with cycle_garbage() as garbage:
        handler = StreamingWorkflow().run(listener=RecordingListener())
        streamed = await collect_stream(handler)
        ctx = handler.ctx
        assert await handler == "done"
        assert len(streamed) == 4  # three progress events and the StopEvent
        assert not ctx.is_running and ctx.run_id == handler.run_id  # usable after the end
        assert handler.ctx is ctx
        del handler, ctx
    ours = (Run, Work, Context, WorkflowHandler, RecordingListener)
    assert [type(o).__name__ for o in garbage if isinstance(o, ours)] == []


async def test_a_runs_tasks_carry_its_run_id_as_their_name() -> None:
    """What ``asyncio.all_tasks()`` and debuggers show for a run's steps."""

    class Named(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            task = asyncio.current_task()
            assert task is not None
            return StopEvent(result=task.get_name())

    assert await Named().start_run(run_id="run-42") == "run-42"
