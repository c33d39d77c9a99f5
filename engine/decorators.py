"""The ``@step`` decorator: marks a coroutine function as a step and records its limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .errors import WorkflowValidationError
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .workflow import Workflow

F = TypeVar("F", bound=Callable[..., Any])

STEP_CONFIG_ATTR = "__step_config__"


@dataclass(frozen=True, slots=True)
class StepConfig:
    num_workers: int = 4
    retry_policy: RetryPolicy | None = None
    timeout: float | None = None


@overload
def step(func: F, /) -> F: ...


@overload
def step(
    *,
    workflow: type[Workflow] | None = None,
    num_workers: int = 4,
    retry_policy: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Callable[[F], F]: ...


def step(
    func: F | None = None,
    /,
    *,
    workflow: type[Workflow] | None = None,
    num_workers: int = 4,
    retry_policy: RetryPolicy | None = None,
    timeout: float | None = None,
) -> F | Callable[[F], F]:
    """Mark an ``async def`` as a step. Usable bare (``@step``) or with options.

    ``num_workers`` bounds how many invocations of this step run at once within one run
    (4 by default, as in llama-index-workflows); ``retry_policy`` decides whether a failed
    attempt is retried; ``timeout`` bounds each attempt. ``workflow=`` attaches a free
    function (not a method) to a workflow class.
    """
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1:
        raise WorkflowValidationError(f"num_workers must be an integer >= 1, got {num_workers!r}")
    if timeout is not None and timeout <= 0:
        raise WorkflowValidationError(f"step timeout must be positive, got {timeout!r}")
    if retry_policy is not None and not callable(getattr(retry_policy, "next", None)):
        raise WorkflowValidationError("retry_policy must have a next() method")
    config = StepConfig(num_workers=num_workers, retry_policy=retry_policy, timeout=timeout)

    def decorate(fn: F) -> F:
        setattr(fn, STEP_CONFIG_ATTR, config)
        if workflow is not None:
            workflow.add_step(fn)
        return fn

    return decorate(func) if func is not None else decorate
