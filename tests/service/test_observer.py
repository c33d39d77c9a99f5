"""How a run gets its metrics and tracing observers."""

from __future__ import annotations

import collections

import pytest

from service._pb import workflow_pb2 as pb
from service.observer import RunObserver, observe_run


class Count:
    def __init__(self) -> None:
        self.value = 0.0


class Counting(RunObserver):
    """Counts events and hears finished steps."""

    def __init__(self, heard: list[tuple[str, ...]]) -> None:
        self.heard = heard
        self.event_counts = collections.defaultdict(Count)

    def step_finished(
        self, step: str, invocation: int, attempt: int, duration: float, error: BaseException | None
    ) -> None:
        self.heard.append(("counting.step_finished", step))


class Spanning(RunObserver):
    """Hears steps and the run's end."""

    def __init__(self, heard: list[tuple[str, ...]]) -> None:
        self.heard = heard

    def step_started(self, step: str, invocation: int, attempt: int) -> None:
        self.heard.append(("spanning.step_started", step))

    def step_finished(
        self, step: str, invocation: int, attempt: int, duration: float, error: BaseException | None
    ) -> None:
        self.heard.append(("spanning.step_finished", step))

    def run_ended(self, status: str | None) -> None:
        self.heard.append(("spanning.run_ended", str(status)))


def test_a_run_gets_one_observer_per_factory_in_order() -> None:
    heard: list[tuple[str, ...]] = []
    made: list[tuple[str, str, bool]] = []

    def counting(run_id: str, workflow: str, resumed: bool) -> RunObserver:
        made.append((run_id, workflow, resumed))
        return Counting(heard)

    observers, counts = observe_run((counting, lambda *_: Spanning(heard)), "r1", "echo", True)
    assert made == [("r1", "echo", True)]
    assert [type(o) for o in observers] == [Counting, Spanning]
    assert counts is observers[0].event_counts  # the counting observer's own
    counts[pb.EVENT_KIND_STEP_STARTED].value += 1
    assert {k: c.value for k, c in counts.items()} == {pb.EVENT_KIND_STEP_STARTED: 1}


def test_no_factories_mean_no_observers_and_no_counts() -> None:
    assert observe_run((), "r1", "echo", False) == ((), None)
    observers, counts = observe_run((lambda *_: Spanning([]),), "r1", "echo", False)
    assert len(observers) == 1 and counts is None


def test_observers_that_both_count_events_are_refused() -> None:
    with pytest.raises(NotImplementedError, match="only one"):
        observe_run((lambda *_: Counting([]), lambda *_: Counting([])), "r1", "echo", False)
