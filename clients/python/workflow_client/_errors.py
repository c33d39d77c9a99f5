"""Typed exceptions, and the one place that turns gRPC status codes into them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from ._types import Run


class WorkflowServiceError(Exception):
    """The service answered with an error status (or could not be reached)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class InvalidArgumentError(WorkflowServiceError):
    """The request was malformed; ``details`` says which field and why."""


class NotFoundError(WorkflowServiceError):
    """No such workflow or run."""


class AlreadyExistsError(WorkflowServiceError):
    """The run_id names a run with a different workflow or input."""


class FailedPreconditionError(WorkflowServiceError):
    """The run is not in a state that allows the call (e.g. it has ended)."""


class ResourceExhaustedError(WorkflowServiceError):
    """The server is at a limit; retry later."""


class UnavailableError(WorkflowServiceError):
    """The server could not be reached or is shutting down."""


class DeadlineExceededError(WorkflowServiceError):
    """The call's deadline passed (a run being waited for goes on)."""


class UnauthenticatedError(WorkflowServiceError):
    """No valid credentials."""


class PermissionDeniedError(WorkflowServiceError):
    """The credentials do not allow this call."""


_BY_CODE: dict[grpc.StatusCode, type[WorkflowServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


def from_rpc_error(e: grpc.aio.AioRpcError) -> WorkflowServiceError:
    code = e.code()
    return _BY_CODE.get(code, WorkflowServiceError)(code, e.details() or "")


@contextmanager
def mapped_errors() -> Iterator[None]:
    try:
        yield
    except grpc.aio.AioRpcError as e:
        raise from_rpc_error(e) from e


class RunError(Exception):
    """A run ended without a result; ``run`` holds its final state."""

    def __init__(self, run: Run) -> None:
        err = run.error
        what = f"{err.type}: {err.message}" if err else run.status
        super().__init__(f"run {run.run_id} ({run.workflow}) ended {run.status}: {what}")
        self.run = run


class RunFailedError(RunError):
    """A step failed (``run.error.step`` says which) or the run could not go on."""


class RunCancelledError(RunError):
    """The run was cancelled."""


class RunTimedOutError(RunError):
    """The run exceeded its timeout."""
