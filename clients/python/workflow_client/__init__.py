"""Python client for workflow.v1.WorkflowService: async (:class:`WorkflowClient`) and
blocking (:class:`SyncWorkflowClient`)."""

from ._client import RunHandle, WorkflowClient
from ._errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    RunCancelledError,
    RunError,
    RunFailedError,
    RunTimedOutError,
    UnauthenticatedError,
    UnavailableError,
    WorkflowServiceError,
)
from ._sync import SyncRunHandle, SyncWorkflowClient
from ._types import Event, Run, RunErrorInfo, WorkflowInfo

__all__ = [
    "AlreadyExistsError",
    "DeadlineExceededError",
    "Event",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "Run",
    "RunCancelledError",
    "RunError",
    "RunErrorInfo",
    "RunFailedError",
    "RunHandle",
    "RunTimedOutError",
    "SyncRunHandle",
    "SyncWorkflowClient",
    "UnauthenticatedError",
    "UnavailableError",
    "WorkflowClient",
    "WorkflowInfo",
    "WorkflowServiceError",
]
