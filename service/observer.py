"""How metrics and tracing hear what a run does.

The run manager asks an :data:`ObserveRun` factory for one :class:`RunObserver` per run
when the run starts (inside the RPC that started it, so tracing can parent the run to the
call). With metrics and tracing both off there is no factory and runs skip every call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast


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


class _Both(RunObserver):
    __slots__ = ("a", "b", "event_counts")

    def __init__(self, a: RunObserver, b: RunObserver) -> None:
        self.a = a
        self.b = b
        if a.event_counts is not None and b.event_counts is not None:
            raise NotImplementedError("only one of two combined observers may count events")
        self.event_counts = a.event_counts if a.event_counts is not None else b.event_counts

    def step_started(self, step: str, invocation: int, attempt: int) -> None:
        self.a.step_started(step, invocation, attempt)
        self.b.step_started(step, invocation, attempt)

    def step_finished(
        self, step: str, invocation: int, attempt: int, duration: float, error: BaseException | None
    ) -> None:
        self.a.step_finished(step, invocation, attempt, duration, error)
        self.b.step_finished(step, invocation, attempt, duration, error)

    def run_ended(self, status: str | None) -> None:
        self.a.run_ended(status)
        self.b.run_ended(status)


class _FirstOnly(_Both):
    """The hooks of a pair that only its first observer implements: each calls it
    directly (a generic forwarder costs a lookup and an argument tuple per call)."""

    __slots__ = ()

    def step_started(self, step: str, invocation: int, attempt: int) -> None:
        self.a.step_started(step, invocation, attempt)

    def step_finished(
        self, step: str, invocation: int, attempt: int, duration: float, error: BaseException | None
    ) -> None:
        self.a.step_finished(step, invocation, attempt, duration, error)

    def run_ended(self, status: str | None) -> None:
        self.a.run_ended(status)


class _SecondOnly(_Both):
    """As :class:`_FirstOnly`, for the second observer."""

    __slots__ = ()

    def step_started(self, step: str, invocation: int, attempt: int) -> None:
        self.b.step_started(step, invocation, attempt)

    def step_finished(
        self, step: str, invocation: int, attempt: int, duration: float, error: BaseException | None
    ) -> None:
        self.b.step_finished(step, invocation, attempt, duration, error)

    def run_ended(self, status: str | None) -> None:
        self.b.run_ended(status)


_HOOKS = ("step_started", "step_finished", "run_ended")


_PAIRS: dict[tuple[type[RunObserver], type[RunObserver]], type[_Both]] = {}


def _pair(first: type[RunObserver], second: type[RunObserver]) -> type[_Both]:
    """:class:`_Both` for observers of these types, whose hooks call only the observers
    that implement them (a run makes a few calls per step; most observers hear only some
    of them)."""
    overrides: dict[str, Any] = {"__slots__": ()}
    for hook in _HOOKS:
        default = getattr(RunObserver, hook)
        first_hears = getattr(first, hook) is not default
        second_hears = getattr(second, hook) is not default
        if not (first_hears or second_hears):
            overrides[hook] = default
        elif not second_hears:
            overrides[hook] = getattr(_FirstOnly, hook)
        elif not first_hears:
            overrides[hook] = getattr(_SecondOnly, hook)
    name = f"_Both[{first.__name__}, {second.__name__}]"
    made = _PAIRS[first, second] = cast("type[_Both]", type(name, (_Both,), overrides))
    return made


def combine(a: ObserveRun | None, b: ObserveRun | None) -> ObserveRun | None:
    """One factory for both, or the one that is set, or None."""
    if a is None or b is None:
        return a or b

    def both(run_id: str, workflow: str, resumed: bool) -> RunObserver:
        first, second = a(run_id, workflow, resumed), b(run_id, workflow, resumed)
        kinds = (type(first), type(second))
        return (_PAIRS.get(kinds) or _pair(*kinds))(first, second)

    return both
