"""Every error the engine raises. Hosts map these to their own protocol in one place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class WorkflowError(Exception):
    """Base class of every engine error."""


class WorkflowValidationError(WorkflowError):
    """The workflow's step graph is invalid; raised when the workflow is built."""


class WorkflowRuntimeError(WorkflowError):
    """A run could not go on (misuse of the context, a step returning a non-event, ...)."""


class WorkflowNotRunningError(WorkflowRuntimeError):
    """The run has ended; it accepts no more events."""


class StepFailedError(WorkflowRuntimeError):
    """A step raised and its retry policy gave up; the original exception is ``__cause__``."""

    def __init__(self, step: str, attempts: int, cause: BaseException) -> None:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"step '{step}' failed{tries}: {type(cause).__name__}: {cause}")
        self.step = step
        self.attempts = attempts


class StepTimeoutError(WorkflowError, TimeoutError):
    """One attempt of a step ran longer than its ``@step(timeout=...)``."""

    def __init__(self, step: str, timeout: float) -> None:
        super().__init__(f"step '{step}' exceeded its timeout of {timeout:g}s")
        self.step = step
        self.timeout = timeout


class WorkflowTimeoutError(WorkflowError, TimeoutError):
    """The run exceeded the workflow's ``timeout``."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"workflow run exceeded its timeout of {timeout:g}s")
        self.timeout = timeout


class WorkflowCancelledError(WorkflowError):
    """The run was cancelled with ``handler.cancel_run()``."""


class WorkflowStalledError(WorkflowRuntimeError):
    """Nothing is running, queued or awaited, yet no step has produced a StopEvent."""

    def __init__(self, message: str, unconsumed: list[str]) -> None:
        super().__init__(message)
        self.unconsumed = unconsumed


class WaitForEventTimeoutError(WorkflowError, TimeoutError):
    """``ctx.wait_for_event(..., timeout=...)`` saw no matching event in time."""

    def __init__(self, event_type: str, timeout: float) -> None:
        super().__init__(f"no {event_type} arrived within {timeout:g}s")
        self.event_type = event_type
        self.timeout = timeout


class EventValidationError(WorkflowError, ValueError):
    """Data does not fit an event's schema.

    ``violations`` lists every problem as ``(field, message)``, in the order found, with
    nested fields dotted (``items.0.name``) and ``"(event)"`` for the data as a whole;
    ``fields`` maps each bad field to its first problem.
    """

    def __init__(
        self, event_type: str, violations: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> None:
        pairs = list(violations.items() if isinstance(violations, Mapping) else violations)
        detail = "; ".join(f"{k}: {v}" for k, v in pairs)
        super().__init__(f"invalid {event_type}: {detail}")
        self.event_type = event_type
        self.violations: list[tuple[str, str]] = pairs
        self.fields: dict[str, str] = {}
        for name, message in pairs:
            self.fields.setdefault(name, message)


class UnknownEventTypeError(WorkflowError, LookupError):
    """An event type name that no known event class carries."""

    def __init__(self, type_name: str, known: list[str] | None = None) -> None:
        hint = f" (known: {', '.join(sorted(known))})" if known else ""
        super().__init__(f"unknown event type '{type_name}'{hint}")
        self.type_name = type_name


class CheckpointError(WorkflowError, ValueError):
    """A checkpoint could not be written or read back."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


# Name used by llama-index-workflows, kept so ported code catching it still works.
WorkflowCancelledByUser = WorkflowCancelledError
