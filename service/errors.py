"""The one map from engine and service errors to gRPC statuses.

Every error leaves as a status code and message plus a ``google.rpc.Status`` in the
``grpc-status-details-bin`` trailer with an ``ErrorInfo`` (a stable ``reason`` in the
``workflow.v1`` domain and metadata such as ``run_id``), a ``BadRequest`` listing each bad
field when the request was at fault, and a ``RetryInfo`` when retrying later may succeed.
The reasons are part of the API (see README, "Errors").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from engine import (
    CheckpointError,
    EventValidationError,
    UnknownEventTypeError,
    WorkflowNotRunningError,
    WorkflowValidationError,
)

from . import logs
from .store import StoreUnavailableError

log = logging.getLogger("service")

DOMAIN = "workflow.v1"
DETAILS_KEY = "grpc-status-details-bin"

# Trailers travel in one HTTP/2 header block that clients cap (8 KiB by default): keep the
# message and the details of a huge bad input well below that.
_MAX_MESSAGE = 1024
_MAX_VIOLATIONS = 10
_MAX_FIELD = 128
_MAX_DESCRIPTION = 256


class ServiceError(Exception):
    """An error the service raises on purpose; its class decides the status code.

    ``reason`` is the ErrorInfo reason (a class without one gets the status code's name,
    e.g. ``UNAUTHENTICATED``); ``metadata`` goes into the ErrorInfo, ``violations`` into a
    BadRequest as ``(field, description)`` and ``retry_after`` (seconds) into a RetryInfo.
    """

    reason: str = ""
    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, object] | None = None,
        violations: Iterable[tuple[str, str]] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.metadata = {k: str(v) for k, v in (metadata or {}).items()}
        self.violations = list(violations)
        if retry_after is not None:
            self.retry_after = retry_after


class InvalidArgumentError(ServiceError):
    """A request field is malformed: ``InvalidArgumentError("after_sequence", "must not be
    negative")`` names the field in the message and in a field violation."""

    reason = "REQUEST_INVALID"

    def __init__(
        self,
        field: str,
        description: str | None = None,
        *,
        reason: str | None = None,
        metadata: Mapping[str, object] | None = None,
    ) -> None:
        if description is None:  # a message that names no single field
            super().__init__(field, reason=reason, metadata=metadata)
        else:
            super().__init__(
                f"{field}: {description}",
                reason=reason,
                metadata={"field": field, **(metadata or {})},
                violations=[(field, description)],
            )


class InvalidDataError(InvalidArgumentError):
    """Data (a run's input, a sent event) does not fit its event's schema; each bad field
    becomes a violation under ``field``, e.g. ``input.count``."""

    def __init__(
        self, field: str, error: EventValidationError, *, reason: str, **metadata: object
    ) -> None:
        ServiceError.__init__(
            self,
            f"{field}: {error}",
            reason=reason,
            metadata={"event_type": error.event_type, **metadata},
            violations=[(_subfield(field, name), message) for name, message in error.violations],
        )


class PayloadTooLargeError(InvalidArgumentError):
    reason = "PAYLOAD_TOO_LARGE"

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(
            field,
            f"{size} bytes is more than this server accepts ({limit} bytes, "
            "--max-payload-bytes); pass large data by reference instead",
            metadata={"size_bytes": size, "limit_bytes": limit},
        )


class EventTypeUnknownError(InvalidArgumentError):
    reason = "EVENT_TYPE_UNKNOWN"


class WorkflowNotFoundError(ServiceError):
    reason = "WORKFLOW_NOT_FOUND"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"no workflow named '{name}'; this server hosts: {', '.join(sorted(known)) or 'none'}",
            metadata={"workflow": name},
        )


class RunNotFoundError(ServiceError):
    reason = "RUN_NOT_FOUND"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id '{run_id}'", metadata={"run_id": run_id})


class RunAlreadyExistsError(ServiceError):
    """A run_id was reused with a different workflow or input."""

    reason = "RUN_ALREADY_EXISTS"


class RunEndedError(ServiceError):
    """The run has already ended, so the request no longer applies."""

    reason = "RUN_ALREADY_ENDED"


class TooManyRunsError(ServiceError):
    """Admission control: the server is running as many runs as it may."""

    reason = "TOO_MANY_RUNS"
    retry_after = 1.0


class KeyBusyError(TooManyRunsError):
    """Every slot of the run's concurrency_key is taken and the server refuses extra runs."""

    reason = "CONCURRENCY_KEY_BUSY"

    def __init__(self, key: str, limit: int) -> None:
        super().__init__(
            f"labels.concurrency_key: '{key}' already has its maximum of {limit} running "
            "runs (--max-runs-per-key); retry later",
            metadata={"concurrency_key": key, "limit": limit},
        )


class ShuttingDownError(ServiceError):
    """The server is stopping and takes no new runs."""

    reason = "SHUTTING_DOWN"
    retry_after = 1.0


class ResultTooLargeError(Exception):
    """Not a request error: ends a run whose result exceeds --max-result-bytes (FAILED, with
    this as its error type)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the result is {size} bytes, more than this server keeps ({limit} bytes, "
            "--max-result-bytes); return a reference to large data instead"
        )


class UnauthenticatedError(ServiceError):
    """The call carries no valid token; the message says what to send."""


class PermissionDeniedError(ServiceError):
    """The token is valid but its scopes or workflows do not allow the call."""


_STATUS: dict[type[Exception], grpc.StatusCode] = {
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    EventValidationError: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownEventTypeError: grpc.StatusCode.INVALID_ARGUMENT,
    CheckpointError: grpc.StatusCode.INVALID_ARGUMENT,
    WorkflowValidationError: grpc.StatusCode.INVALID_ARGUMENT,
    WorkflowNotFoundError: grpc.StatusCode.NOT_FOUND,
    RunNotFoundError: grpc.StatusCode.NOT_FOUND,
    RunAlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    RunEndedError: grpc.StatusCode.FAILED_PRECONDITION,
    WorkflowNotRunningError: grpc.StatusCode.FAILED_PRECONDITION,
    TooManyRunsError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ShuttingDownError: grpc.StatusCode.UNAVAILABLE,
    StoreUnavailableError: grpc.StatusCode.UNAVAILABLE,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
}

# Reasons for the errors that are not ServiceErrors (engine and store).
_REASONS: dict[type[Exception], str] = {
    EventValidationError: "EVENT_INVALID",
    UnknownEventTypeError: "EVENT_TYPE_UNKNOWN",
    CheckpointError: "CHECKPOINT_INVALID",
    WorkflowValidationError: "WORKFLOW_INVALID",
    WorkflowNotRunningError: "RUN_ALREADY_ENDED",
    StoreUnavailableError: "STORE_UNAVAILABLE",
}


def status_for(error: Exception) -> grpc.StatusCode | None:
    return next((c for t, c in _STATUS.items() if isinstance(error, t)), None)


def rich_status(code: grpc.StatusCode, error: Exception) -> tuple[str, status_pb2.Status]:
    """The message and ``google.rpc.Status`` for ``error`` answered with ``code``; an
    unexpected error (INTERNAL) shows only its type."""
    reason = code.name
    metadata: dict[str, str] = {}
    violations: list[tuple[str, str]] = []
    retry_after: float | None = None
    if code == grpc.StatusCode.INTERNAL:
        message = f"internal error: {type(error).__name__}"
    else:
        message = str(error)
        if isinstance(error, ServiceError):
            reason = error.reason or reason
            metadata = dict(error.metadata)
            violations = error.violations
            retry_after = error.retry_after
        else:
            reason = next((r for t, r in _REASONS.items() if isinstance(error, t)), reason)
            if isinstance(error, EventValidationError):
                violations = error.violations
                metadata["event_type"] = error.event_type
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    metadata = {k: _clip(v, _MAX_DESCRIPTION) for k, v in metadata.items()}
    if len(violations) > _MAX_VIOLATIONS:
        metadata["violations_omitted"] = str(len(violations) - _MAX_VIOLATIONS)
    status = status_pb2.Status(code=_CODE_NUMBER[code], message=message)
    _pack(
        status,
        error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata),
    )
    if violations:
        _pack(
            status,
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_clip(field, _MAX_FIELD), description=_clip(text, _MAX_DESCRIPTION)
                    )
                    for field, text in violations[:_MAX_VIOLATIONS]
                ]
            ),
        )
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        _pack(status, error_details_pb2.RetryInfo(retry_delay=delay))
    return message, status


class GrpcErrors:
    """``async with GrpcErrors(context):`` turns an exception raised by a handler body into a
    gRPC status with its details. A class rather than a generator-based context manager:
    it wraps every call, and costs a quarter as much."""

    __slots__ = ("context",)

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not isinstance(e, Exception) or isinstance(e, grpc.aio.AbortError):
            return  # no error, already a status, or not ours to turn (cancellation)
        await abort_with(self.context, e)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], e: Exception) -> NoReturn:
    """End the call with the status ``e`` maps to; an ``AbortError`` (the call has its
    status already) is raised again. What ``GrpcErrors`` does, for a handler that saves
    its cost by catching errors itself."""
    if isinstance(e, grpc.aio.AbortError):
        raise e
    code = status_for(e)
    if code is None:
        logs.event(log, logging.ERROR, "handler_failed", error=type(e).__name__, exc_info=e)
        code = grpc.StatusCode.INTERNAL
    message, status = rich_status(code, e)
    await context.abort(
        code, message, trailing_metadata=((DETAILS_KEY, status.SerializeToString()),)
    )
    raise AssertionError("abort() always raises")


_CODE_NUMBER: dict[grpc.StatusCode, int] = {c: c.value[0] for c in grpc.StatusCode}


def _pack(status: status_pb2.Status, detail: Any) -> None:
    packed = any_pb2.Any()
    packed.Pack(detail)
    status.details.append(packed)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _subfield(parent: str, name: str) -> str:
    """``input`` + ``count`` → ``input.count``; the data as a whole stays ``input``."""
    return parent if name == "(event)" else f"{parent}.{name}"
