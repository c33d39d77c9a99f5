"""How metrics and tracing hear what a run does.

The run manager asks each :data:`ObserveRun` factory (metrics', tracing's) for one
:class:`RunObserver` per run when the run starts (inside the RPC that started it, so
tracing can parent the run to the call), and the run calls each of them in turn. With
metrics and tracing both off there is no factory and runs skip every call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol


class EventCount(Protocol):
    value: float


class RunObserver:
    """Hears one run; every method does nothing by default. Called on the event loop."""

    __slots__ = ()

    #: Counts, by event kind, that the run adds 1 to (``event_counts[kind].value += 1``)
    #: for each event it appends to its log; None: the observer does not count them. A
    #: mapping rather than a hook: a run appends events far more often than it does
    #: anything else, and an increment costs a fraction of a call.
    event_counts: Mapping[int, EventCount] | None = None

    def step_started(self, step: str, invocation: int, attempt: int) -> None:
        """An attempt of a step began (in the step's own task)."""

    def step_finished(
        self, step: str, invocation: int, attempt: int, duration: float, error: BaseException | None
    ) -> None:
        """The attempt ended after ``duration`` seconds, failed when ``error`` is set."""

    def run_ended(self, status: str | None) -> None:
        """The run ended with ``status`` (a RunStatus value), or None when it was left
        unfinished for the next server to resume."""


#: (run_id, workflow, resumed) -> the observer of that run.
ObserveRun = Callable[[str, str, bool], RunObserver]


def observe_run(
    factories: Sequence[ObserveRun], run_id: str, workflow: str, resumed: bool
) -> tuple[tuple[RunObserver, ...], Mapping[int, EventCount] | None]:
    """The observers of a run, one per factory in order, and the event counts the run
    keeps (those of the one observer that counts events, if any)."""
    observers = []
    counts = None
    for observe in factories:
        observer = observe(run_id, workflow, resumed)
        observers.append(observer)
        if observer.event_counts is not None:
            if counts is not None:
                raise NotImplementedError("only one of a run's observers may count events")
            counts = observer.event_counts
    return tuple(observers), counts
