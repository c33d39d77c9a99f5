"""When runs save their checkpoints (service.checkpoints), on a real event loop."""

import asyncio

import pytest

from service.checkpoints import CHECKPOINT_DELAY, CheckpointSchedule
from service.config import parse_args

DELAY = 0.2


class FakeRun:
    """What the schedule sees of a run: its id, its flags and the saves it was asked for."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.checkpoint_due = False
        self.unsaved = 0.0
        self.saved_at: list[float] = []

    def save_checkpoint(self) -> None:
        self.checkpoint_due = False
        self.unsaved = 0.0
        self.saved_at.append(asyncio.get_running_loop().time())

    def step(self, schedule: CheckpointSchedule, seconds: float = 0.001) -> None:
        """A step that ran ``seconds`` completed, as ActiveRun reports it."""
        self.unsaved += seconds
        schedule.add(self)


async def test_quick_steps_are_saved_once_after_the_delay() -> None:
    run = FakeRun("a")
    schedule = CheckpointSchedule({"a": run}, DELAY)
    began = asyncio.get_running_loop().time()
    run.step(schedule)
    await asyncio.sleep(DELAY / 2)
    run.step(schedule)
    run.step(schedule)
    assert run.saved_at == []
    await asyncio.sleep(DELAY)
    assert len(run.saved_at) == 1  # one checkpoint covers the three steps
    assert DELAY - 0.01 <= run.saved_at[0] - began < 2 * DELAY
    run.step(schedule)  # a step after the save is due a delay after it completes
    await asyncio.sleep(DELAY + 0.05)
    assert len(run.saved_at) == 2


async def test_a_run_that_ended_before_its_turn_is_not_saved() -> None:
    going, ended = FakeRun("going"), FakeRun("ended")
    runs = {"going": going, "ended": ended}
    schedule = CheckpointSchedule(runs, DELAY)
    ended.step(schedule)
    going.step(schedule)
    del runs["ended"]  # the run manager forgets a run once it has ended
    await asyncio.sleep(DELAY + 0.05)
    assert ended.saved_at == []
    assert len(going.saved_at) == 1


async def test_a_step_that_ran_the_delay_is_saved_on_the_next_loop_turn() -> None:
    run = FakeRun("a")
    schedule = CheckpointSchedule({"a": run}, DELAY)
    run.step(schedule)  # quick: due a delay from now
    run.step(schedule, DELAY)  # long: the run's unsaved work now exceeds the delay
    run.step(schedule, DELAY)  # in the same turn: still one save
    assert run.saved_at == []
    await asyncio.sleep(0)
    assert len(run.saved_at) == 1
    await asyncio.sleep(DELAY + 0.05)
    assert len(run.saved_at) == 1  # the quick step's turn found the run saved


async def test_quick_steps_adding_up_to_the_delay_are_saved_at_once() -> None:
    run = FakeRun("a")
    schedule = CheckpointSchedule({"a": run}, DELAY)
    for _ in range(4):
        run.step(schedule, DELAY / 4)
    await asyncio.sleep(0)
    assert len(run.saved_at) == 1


async def test_runs_are_saved_in_the_order_their_steps_completed() -> None:
    loop = asyncio.get_running_loop()
    runs = {name: FakeRun(name) for name in "abc"}
    schedule = CheckpointSchedule(runs, DELAY)
    completed = []
    for name in "abc":
        completed.append(loop.time())
        runs[name].step(schedule)
        await asyncio.sleep(0.05)
    await asyncio.sleep(DELAY)
    times = [runs[name].saved_at[0] for name in "abc"]
    assert times == sorted(times)
    # Each when its own delay is up, never at the first one's (late is the loop's doing).
    for done, saved in zip(completed, times, strict=True):
        assert saved >= done + DELAY - 0.003


async def test_a_delay_of_zero_saves_after_every_loop_turn_with_a_step() -> None:
    run = FakeRun("a")
    schedule = CheckpointSchedule({"a": run}, 0)
    run.step(schedule, 0.0)
    run.step(schedule, 0.0)
    await asyncio.sleep(0)
    assert len(run.saved_at) == 1
    run.step(schedule, 0.0)
    await asyncio.sleep(0)
    assert len(run.saved_at) == 2


async def test_cancel_saves_nothing_more() -> None:
    quick, slow = FakeRun("quick"), FakeRun("slow")
    schedule = CheckpointSchedule({"quick": quick, "slow": slow}, DELAY)
    quick.step(schedule)
    slow.step(schedule, DELAY)
    schedule.cancel()
    await asyncio.sleep(DELAY + 0.05)
    assert quick.saved_at == [] and slow.saved_at == []
    assert not quick.checkpoint_due and not slow.checkpoint_due
    quick.step(schedule)  # the schedule still works for what comes after
    await asyncio.sleep(DELAY + 0.05)
    assert len(quick.saved_at) == 1


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        CheckpointSchedule({}, -1)


def test_the_delay_from_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_args([]).checkpoint_delay == CHECKPOINT_DELAY
    assert parse_args(["--checkpoint-delay", "0"]).checkpoint_delay == 0
    monkeypatch.setenv("WORKFLOW_CHECKPOINT_DELAY", "2.5")
    assert parse_args([]).checkpoint_delay == 2.5
    for bad in ("-1", "nan"):
        with pytest.raises(SystemExit):
            parse_args(["--checkpoint-delay", bad])
