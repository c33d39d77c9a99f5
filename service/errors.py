"""The one map from engine and service errors to gRPC status codes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from engine import (
    CheckpointError,
    EventValidationError,
    UnknownEventTypeError,
    WorkflowNotRunningError,
    WorkflowValidationError,
)

from .store import StoreUnavailableError

log = logging.getLogger("service")


class ServiceError(Exception):
    """An error the service raises on purpose; its class decides the status code."""


class InvalidArgumentError(ServiceError):
    """The request is malformed; the message says which field and how to fix it."""


class WorkflowNotFoundError(ServiceError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"no workflow named '{name}'; this server hosts: {', '.join(sorted(known)) or 'none'}"
        )


class RunNotFoundError(ServiceError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id '{run_id}'")


class RunAlreadyExistsError(ServiceError):
    """A run_id was reused with a different workflow or input."""


class RunEndedError(ServiceError):
    """The run has already ended, so the request no longer applies."""


class TooManyRunsError(ServiceError):
    """Admission control: the server is running as many runs as it may."""


class KeyBusyError(TooManyRunsError):
    """Every slot of the run's concurrency_key is taken and the server refuses extra runs."""


class ShuttingDownError(ServiceError):
    """The server is stopping and takes no new runs."""


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


def status_for(error: Exception) -> grpc.StatusCode | None:
    return next((c for t, c in _STATUS.items() if isinstance(error, t)), None)


@asynccontextmanager
async def grpc_errors(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    """Turn an exception raised by a handler body into a gRPC status."""
    try:
        yield
    except grpc.aio.AbortError:
        raise  # already a status
    except Exception as e:
        code = status_for(e)
        if code is None:
            log.exception("unexpected error in a request handler")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}")
        else:
            await context.abort(code, str(e))
