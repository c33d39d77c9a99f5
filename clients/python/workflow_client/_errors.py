"""Typed exceptions, and the one place that turns gRPC status codes into them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

if TYPE_CHECKING:
    from ._types import Run


_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field: its path (``input.count``, ``data.response``) and what is
    wrong with it."""

    field: str
    description: str


class WorkflowServiceError(Exception):
    """The service answered with an error status (or could not be reached).

    ``reason`` is the service's stable error reason (e.g. ``RUN_NOT_FOUND``; empty when the
    error did not come from the service) in ``domain`` (``workflow.v1``), ``metadata`` its
    context (``run_id``, ``workflow``, ...), ``field_violations`` the bad request fields and
    ``retry_after`` the seconds the server asks to wait before retrying (or None).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Iterable[FieldViolation] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[FieldViolation] = list(field_violations)
        self.retry_after = retry_after


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
    error = _BY_CODE.get(code, WorkflowServiceError)(code, e.details() or "")
    _read_status_details(error, e.trailing_metadata())
    return error


def _read_status_details(
    error: WorkflowServiceError, trailers: Iterable[tuple[str, str | bytes]] | None
) -> None:
    """Fill ``error`` from the google.rpc.Status in the trailers, if there is a readable one
    (a proxy or a server of another kind may send none)."""
    raw = next((v for k, v in trailers or () if k == _DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return
    try:
        status = status_pb2.Status.FromString(raw)
    except DecodeError:
        return
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            error.reason, error.domain = info.reason, info.domain
            error.metadata = dict(info.metadata)
        elif detail.Unpack(bad):
            error.field_violations = [
                FieldViolation(v.field, v.description) for v in bad.field_violations
            ]
        elif detail.Unpack(retry):
            error.retry_after = retry.retry_delay.ToNanoseconds() / 1e9


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
