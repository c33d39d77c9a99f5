"""Steps in a chain run in one task (engine.run: _launch, _invoke), and that changes
nothing a workflow can tell apart: order, timeouts, cancellation, fairness."""

import asyncio

import pytest

from engine import (
    Context,
    Event,
    RunStatus,
    StartEvent,
    StepFailedError,
    StepTimeoutError,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    step,
)
from engine.run import CHAIN_TURNS

from .helpers import other_tasks, outcome


class Hop(Event):
    n: int


class Branch(Event):
    n: int


class ChainWorkflow(Workflow):
    """StartEvent -> hop * length -> StopEvent; each step notes the task it ran in."""

    def __init__(self, length: int, pause: float = 0.0, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.length = length
        self.pause = pause
        self.tasks: list[asyncio.Task[object] | None] = []

    @step
    async def begin(self, ev: StartEvent) -> Hop:
        self.tasks.append(asyncio.current_task())
        return Hop(n=1)

    @step
    async def hop(self, ev: Hop) -> Hop | StopEvent:
        self.tasks.append(asyncio.current_task())
        if self.pause:
            await asyncio.sleep(self.pause)
        if ev.n == self.length:
            return StopEvent(result=ev.n)
        return Hop(n=ev.n + 1)


async def test_a_chain_of_steps_runs_in_one_task() -> None:
    wf = ChainWorkflow(length=5)
    assert await wf.run() == 5
    assert len(wf.tasks) == 6
    assert len(set(map(id, wf.tasks))) == 1


async def test_a_long_chain_that_never_waits_lets_other_work_run() -> None:
    turns = 0
    stop = asyncio.Event()

    async def count_turns() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.ensure_future(count_turns())
    await asyncio.sleep(0)
    before = turns
    wf = ChainWorkflow(length=20 * CHAIN_TURNS)
    assert await wf.run() == 20 * CHAIN_TURNS
    stop.set()
    await counter
    assert turns - before >= 20  # the loop turned at least every CHAIN_TURNS steps


class FanWorkflow(Workflow):
    """Sends four branches; the first to finish ends the run, so the order the branches
    ran in shows: each had its turn before the stop was handled."""

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.ran: list[str] = []
        self.tasks: set[int] = set()

    @step
    async def fan(self, ctx: Context, ev: StartEvent) -> Branch | None:
        for n in range(4):
            ctx.send_event(Branch(n=n))
        return None

    @step(num_workers=4)
    async def branch(self, ev: Branch) -> Hop:
        self.ran.append(f"branch{ev.n}")
        self.tasks.add(id(asyncio.current_task()))
        return Hop(n=ev.n)

    @step(num_workers=4)
    async def after(self, ev: Hop) -> StopEvent | None:
        self.ran.append(f"after{ev.n}")
        return StopEvent(result=ev.n) if ev.n == 3 else None


async def test_parallel_branches_keep_their_turns() -> None:
    wf = FanWorkflow()
    assert await wf.run() == 3
    assert len(wf.tasks) == 4  # each branch ran in a task of its own
    # Every branch ran before any step that a branch started: work launched later
    # never jumps ahead of work already waiting to run.
    assert wf.ran[:4] == ["branch0", "branch1", "branch2", "branch3"]


class TimedChain(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> Hop:
        return Hop(n=1)

    @step(timeout=0.05)
    async def slow(self, ev: Hop) -> StopEvent:
        await asyncio.sleep(5)
        return StopEvent(result="late")


async def test_a_step_timeout_in_a_chain_times_out_that_step() -> None:
    handler = TimedChain().run()
    error = await outcome(handler)
    assert isinstance(error, StepFailedError)
    assert isinstance(error.__cause__, StepTimeoutError)
    assert handler.status is RunStatus.FAILED
    await asyncio.sleep(0)
    assert not other_tasks()


async def test_cancelling_a_run_stops_the_step_its_chain_is_in() -> None:
    wf = ChainWorkflow(length=3, pause=5)
    handler = wf.run()
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(wf.tasks) == 2  # begin ran, and hop took over its task and is pausing
    handler.cancel_run()
    assert isinstance(await outcome(handler), WorkflowCancelledError)
    assert handler.status is RunStatus.CANCELLED
    await asyncio.sleep(0)
    assert not other_tasks()


@pytest.mark.parametrize("length", [1, 2, CHAIN_TURNS, CHAIN_TURNS + 1])
async def test_chains_of_any_length_leave_no_task_behind(length: int) -> None:
    wf = ChainWorkflow(length=length)
    assert await wf.run() == length
    await asyncio.sleep(0)
    assert not other_tasks()
