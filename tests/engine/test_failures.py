"""Spec 6: step failures, retries, step and workflow timeouts, cancellation, stalls."""

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    ExponentialBackoffRetryPolicy,
    RetryPolicy,
    RunStatus,
    StartEvent,
    StepFailedError,
    StepTimeoutError,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowRuntimeError,
    WorkflowStalledError,
    WorkflowTimeoutError,
    step,
)

from .helpers import collect_stream, other_tasks, outcome, wait_until


class BoomError(Exception):
    pass


class TickEvent(Event):
    n: int


class HalfEvent(Event):
    pass


class OtherHalfEvent(Event):
    pass


class NobodyWantsThis(Event):
    pass


class RaisingWorkflow(Workflow):
    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.raised: BaseException | None = None

    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        self.raised = BoomError("kaboom")
        raise self.raised


class FlakyWorkflow(Workflow):
    """Fails `fail_times` times, then succeeds; records each attempt's start time."""

    def __init__(self, fail_times: int, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.fail_times = fail_times
        self.attempts: list[float] = []
        self.errors: list[BaseException] = []

    async def attempt(self) -> StopEvent:
        self.attempts.append(time.perf_counter())
        if len(self.attempts) <= self.fail_times:
            err = BoomError(f"attempt {len(self.attempts)}")
            self.errors.append(err)
            raise err
        return StopEvent(result=f"ok after {len(self.attempts)}")


class ConstantRetryWorkflow(FlakyWorkflow):
    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=3, delay=0.01))
    async def flaky(self, ev: StartEvent) -> StopEvent:
        return await self.attempt()


class ExponentialRetryWorkflow(FlakyWorkflow):
    @step(
        retry_policy=ExponentialBackoffRetryPolicy(
            initial_delay=0.02, multiplier=2, max_delay=1, maximum_attempts=4
        )
    )
    async def flaky(self, ev: StartEvent) -> StopEvent:
        return await self.attempt()


class SlowStepWorkflow(Workflow):
    @step(timeout=0.05)
    async def slow(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(5)
        return StopEvent(result="late")


class SlowThenFastWorkflow(Workflow):
    """A step timeout is per attempt: a retry that is quick enough succeeds."""

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.calls = 0

    @step(timeout=0.05, retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=0))
    async def sometimes_slow(self, ev: StartEvent) -> StopEvent:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(5)
        return StopEvent(result=self.calls)


class InnerTimeoutWorkflow(Workflow):
    """The step's own asyncio.timeout expires; the step's 5 s limit does not."""

    @step(timeout=5)
    async def own_deadline(self, ev: StartEvent) -> StopEvent:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
        return StopEvent(result="unreachable")


class TimedOutWorkflow(Workflow):
    @step
    async def dawdle(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(TickEvent(n=1))
        await asyncio.sleep(5)
        return StopEvent(result="late")


class BlockedWorkersWorkflow(Workflow):
    """Ten jobs for a two-worker step that sleeps: two run, eight stay queued."""

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.started = 0
        self.finished = 0

    @step
    async def spread(self, ctx: Context, ev: StartEvent) -> TickEvent | None:
        for n in range(10):
            ctx.send_event(TickEvent(n=n))
        await asyncio.sleep(5)
        return None

    @step(num_workers=2)
    async def block(self, ev: TickEvent) -> StopEvent:
        self.started += 1
        await asyncio.sleep(5)
        self.finished += 1
        return StopEvent(result="late")


class HalfCollectedWorkflow(Workflow):
    @step
    async def send_one_half(self, ctx: Context, ev: StartEvent) -> HalfEvent | OtherHalfEvent:
        return HalfEvent()

    @step
    async def join_halves(self, ctx: Context, ev: HalfEvent | OtherHalfEvent) -> StopEvent | None:
        got = ctx.collect_events(ev, [HalfEvent, OtherHalfEvent])
        return None if got is None else StopEvent(result="joined")


class DeadEndWorkflow(Workflow):
    @step
    async def first_leg(self, ev: StartEvent) -> TickEvent:
        return TickEvent(n=1)

    @step
    async def dead_end(self, ev: TickEvent) -> StopEvent | None:
        return None


class UnclaimedEventWorkflow(Workflow):
    @step
    async def send_to_nobody(self, ctx: Context, ev: StartEvent) -> StopEvent | None:
        ctx.send_event(NobodyWantsThis())
        return None


class NonEventReturnWorkflow(Workflow):
    @step
    async def bad_return(self, ev: StartEvent) -> StopEvent:
        return "not an event"  # type: ignore[return-value]


# ---- step errors and retries ---------------------------------------------------------------


async def test_step_error_fails_the_run_naming_the_step_with_the_cause() -> None:
    wf = RaisingWorkflow()
    handler = wf.run()
    err = await outcome(handler)
    assert isinstance(err, StepFailedError)
    assert err.step == "explode"
    assert "explode" in str(err)
    assert "kaboom" in str(err)
    assert err.__cause__ is wf.raised
    assert handler.status is RunStatus.FAILED
    assert handler.error is err
    with pytest.raises(StepFailedError):
        await collect_stream(handler)


async def test_step_returning_a_non_event_fails_the_run() -> None:
    err = await outcome(NonEventReturnWorkflow().run())
    assert isinstance(err, WorkflowRuntimeError)
    assert "bad_return" in str(err)
    assert "str" in str(err)


async def test_constant_retry_succeeds_on_third_attempt() -> None:
    wf = ConstantRetryWorkflow(fail_times=2)
    assert await asyncio.wait_for(wf.run(), 1) == "ok after 3"
    assert len(wf.attempts) == 3
    gaps = [b - a for a, b in zip(wf.attempts, wf.attempts[1:], strict=False)]
    assert all(g >= 0.009 for g in gaps), gaps


async def test_constant_retry_gives_up_after_maximum_attempts() -> None:
    wf = ConstantRetryWorkflow(fail_times=10)
    err = await asyncio.wait_for(outcome(wf.run()), 1)
    assert isinstance(err, StepFailedError)
    assert len(wf.attempts) == 3
    assert err.attempts == 3
    assert "after 3 attempts" in str(err)
    assert err.__cause__ is wf.errors[-1]


def test_constant_delay_policy_values() -> None:
    policy = ConstantDelayRetryPolicy(maximum_attempts=3, delay=0.5)
    err = BoomError()
    assert [policy.next(0.0, n, err) for n in (1, 2, 3)] == [0.5, 0.5, None]
    assert isinstance(policy, RetryPolicy)


def test_exponential_backoff_delays_grow_and_are_capped() -> None:
    policy = ExponentialBackoffRetryPolicy(
        initial_delay=0.01, multiplier=2, max_delay=0.05, maximum_attempts=6
    )
    err = BoomError()
    assert [policy.next(0.0, n, err) for n in range(1, 7)] == [
        0.01,
        0.02,
        0.04,
        0.05,
        0.05,
        None,
    ]
    assert isinstance(policy, RetryPolicy)


def test_exponential_backoff_jitter_stays_within_the_computed_delay() -> None:
    policy = ExponentialBackoffRetryPolicy(
        initial_delay=1, multiplier=3, max_delay=100, maximum_attempts=10, jitter=True
    )
    err = BoomError()
    for attempt in range(1, 6):
        for _ in range(50):
            delay = policy.next(0.0, attempt, err)
            assert delay is not None
            assert 0 <= delay <= 3 ** (attempt - 1)


@pytest.mark.parametrize(
    "kwargs",
    [{"maximum_attempts": 0}, {"initial_delay": -1}, {"multiplier": 0.5}, {"max_delay": -1}],
)
def test_exponential_backoff_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ExponentialBackoffRetryPolicy(**kwargs)  # type: ignore[arg-type]


async def test_exponential_backoff_run_waits_longer_each_time() -> None:
    wf = ExponentialRetryWorkflow(fail_times=3)
    assert await asyncio.wait_for(wf.run(), 2) == "ok after 4"
    gaps = [b - a for a, b in zip(wf.attempts, wf.attempts[1:], strict=False)]
    assert len(gaps) == 3
    for gap, delay in zip(gaps, (0.02, 0.04, 0.08), strict=True):
        assert gap >= delay * 0.95, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps


# ---- timeouts ------------------------------------------------------------------------------


async def test_step_timeout_fails_the_run_with_step_timeout_error_as_cause() -> None:
    began = time.perf_counter()
    handler = SlowStepWorkflow().run()
    err = await asyncio.wait_for(outcome(handler), 1)
    assert time.perf_counter() - began < 0.5
    assert isinstance(err, StepFailedError)
    assert err.step == "slow"
    assert isinstance(err.__cause__, StepTimeoutError)
    assert err.__cause__.step == "slow"
    assert err.__cause__.timeout == 0.05
    assert handler.status is RunStatus.FAILED


async def test_step_timeout_applies_per_attempt_and_can_be_retried() -> None:
    wf = SlowThenFastWorkflow()
    assert await asyncio.wait_for(wf.run(), 1) == 2


async def test_inner_timeout_of_a_step_is_not_reported_as_the_step_timeout() -> None:
    err = await asyncio.wait_for(outcome(InnerTimeoutWorkflow().run()), 1)
    assert isinstance(err, StepFailedError)
    assert isinstance(err.__cause__, TimeoutError)
    assert not isinstance(err.__cause__, StepTimeoutError), str(err.__cause__)


async def test_workflow_timeout_times_out_the_run_and_ends_streams() -> None:
    before = other_tasks()
    handler = TimedOutWorkflow(timeout=0.1).run()
    seen: list[Event] = []

    async def consume() -> None:
        async for ev in handler.stream_events():
            seen.append(ev)

    began = time.perf_counter()
    consumers = [asyncio.ensure_future(consume()) for _ in range(2)]
    results = await asyncio.wait_for(asyncio.gather(*consumers, return_exceptions=True), 2)
    assert time.perf_counter() - began < 1
    assert all(isinstance(r, WorkflowTimeoutError) for r in results), results
    assert [type(e) for e in seen] == [TickEvent, TickEvent]
    err = await outcome(handler)
    assert isinstance(err, WorkflowTimeoutError)
    assert err.timeout == 0.1
    assert handler.status is RunStatus.TIMED_OUT
    assert other_tasks() <= before


async def test_start_timeout_overrides_the_workflow_timeout() -> None:
    handler = TimedOutWorkflow(timeout=10).start_run(StartEvent(), timeout=0.05)
    err = await asyncio.wait_for(outcome(handler), 1)
    assert isinstance(err, WorkflowTimeoutError)


# ---- cancellation --------------------------------------------------------------------------


async def test_cancel_run_cancels_every_task_promptly_including_queued_work() -> None:
    before = other_tasks()
    wf = BlockedWorkersWorkflow()
    handler = wf.run()
    await wait_until(lambda: wf.started == 2)
    running = other_tasks() - before
    assert len(running) == 3  # `spread` and two `block` workers; eight jobs are queued
    began = time.perf_counter()
    handler.cancel_run()
    err = await asyncio.wait_for(outcome(handler), 1)
    assert time.perf_counter() - began < 0.2
    assert isinstance(err, WorkflowCancelledError)
    assert handler.status is RunStatus.CANCELLED
    assert all(t.cancelled() for t in running)
    assert other_tasks() <= before
    # Queued jobs never started, and none finished.
    await asyncio.sleep(0.01)
    assert (wf.started, wf.finished) == (2, 0)


async def test_cancelling_the_handler_future_cancels_the_run() -> None:
    before = other_tasks()
    wf = BlockedWorkersWorkflow()
    handler = wf.run()
    await wait_until(lambda: wf.started == 2)
    assert handler.cancel() is True
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(handler, 1)
    assert handler.cancelled()
    assert handler.status is RunStatus.CANCELLED
    assert other_tasks() <= before


async def test_asyncio_wait_for_on_a_handler_cancels_the_run() -> None:
    before = other_tasks()
    wf = BlockedWorkersWorkflow()
    handler = wf.run()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(handler, 0.05)
    assert handler.status is RunStatus.CANCELLED
    await asyncio.sleep(0)
    assert other_tasks() <= before
    assert wf.finished == 0


_SHUTDOWN_SCRIPT = textwrap.dedent(
    """
    import asyncio
    from engine import StartEvent, StopEvent, Workflow, step

    class Sleeper(Workflow):
        @step
        async def sleep_long(self, ev: StartEvent) -> StopEvent:
            await asyncio.sleep(10)
            return StopEvent()

    async def main():
        handler = Sleeper().run()
        async def await_it():
            return await handler
        task = asyncio.ensure_future(await_it())
        await asyncio.sleep(0.01)
        # main returns while `task` still awaits the handler: asyncio.run cancels it.

    asyncio.run(main())
    print("clean shutdown")
    """
)


def test_asyncio_run_shutdown_with_a_task_awaiting_a_handler() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _SHUTDOWN_SCRIPT],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "clean shutdown" in proc.stdout


# ---- stalls --------------------------------------------------------------------------------


async def stalled(wf: Workflow) -> WorkflowStalledError:
    began = time.perf_counter()
    handler = wf.run()
    err = await asyncio.wait_for(outcome(handler), 1)
    assert time.perf_counter() - began < 0.5
    assert isinstance(err, WorkflowStalledError), err
    assert handler.status is RunStatus.FAILED
    return err


async def test_stall_when_collect_events_never_completes() -> None:
    err = await stalled(HalfCollectedWorkflow(timeout=10))
    assert "HalfEvent" in str(err)
    assert "join_halves" in str(err)
    assert "HalfEvent" in err.unconsumed


async def test_stall_when_a_step_returns_none() -> None:
    err = await stalled(DeadEndWorkflow(timeout=10))
    assert "TickEvent" in str(err)
    assert "dead_end" in str(err)
    assert err.unconsumed == ["TickEvent"]


async def test_stall_when_a_sent_event_has_no_consumer() -> None:
    err = await stalled(UnclaimedEventWorkflow(timeout=10))
    assert "NobodyWantsThis" in str(err)
    assert err.unconsumed == ["NobodyWantsThis"]
