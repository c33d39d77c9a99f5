"""How metrics and tracing observers are combined for one run."""

from __future__ import annotations

import collections

import pytest

from service._pb import workflow_pb2 as pb
from service.observer import RunObserver, combine


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


def test_each_hook_reaches_the_observers_that_implement_it_in_order() -> None:
    heard: list[tuple[str, ...]] = []
    observe = combine(lambda *_: Counting(heard), lambda *_: Spanning(heard))
    assert observe is not None
    for _ in range(2):  # the second run reuses the combined type made for the first
        heard.clear()
        run = observe("r1", "echo", False)
        run.step_started("a", 1, 1)
        assert run.event_counts is not None  # the counting observer's own
        run.event_counts[pb.EVENT_KIND_STEP_STARTED].value += 1
        run.step_finished("a", 1, 1, 0.5, None)
        run.run_ended("SUCCEEDED")
        assert {k: c.value for k, c in run.event_counts.items()} == {pb.EVENT_KIND_STEP_STARTED: 1}
        assert heard == [
            ("spanning.step_started", "a"),
            ("counting.step_finished", "a"),
            ("spanning.step_finished", "a"),
            ("spanning.run_ended", "SUCCEEDED"),
        ]
    assert type(observe("r2", "echo", False)) is type(run)


def test_one_factory_or_none_is_used_as_it_is() -> None:
    def factory(*_: object) -> RunObserver:
        return RunObserver()

    assert combine(factory, None) is factory
    assert combine(None, factory) is factory
    assert combine(None, None) is None


def test_observers_that_both_count_events_are_refused() -> None:
    observe = combine(lambda *_: Counting([]), lambda *_: Counting([]))
    assert observe is not None
    with pytest.raises(NotImplementedError, match="only one"):
        observe("r1", "echo", False)
