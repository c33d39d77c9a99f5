"""An asyncio step/event workflow engine with the authoring API of LlamaIndex Workflows.

Pure asyncio: nothing here knows about gRPC or any host.
"""

from .context import Context
from .decorators import StepConfig, step
from .errors import (
    CheckpointError,
    EventValidationError,
    StepFailedError,
    StepTimeoutError,
    UnknownEventTypeError,
    WaitForEventTimeoutError,
    WorkflowCancelledByUser,
    WorkflowCancelledError,
    WorkflowError,
    WorkflowNotRunningError,
    WorkflowRuntimeError,
    WorkflowStalledError,
    WorkflowTimeoutError,
    WorkflowValidationError,
)
from .events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    deserialize_event,
    serialize_event,
)
from .handler import WorkflowHandler
from .listener import RunListener
from .retry import ConstantDelayRetryPolicy, ExponentialBackoffRetryPolicy, RetryPolicy
from .status import RunStatus
from .workflow import Workflow

__all__ = [
    "CheckpointError",
    "ConstantDelayRetryPolicy",
    "Context",
    "Event",
    "EventValidationError",
    "ExponentialBackoffRetryPolicy",
    "HumanResponseEvent",
    "InputRequiredEvent",
    "RetryPolicy",
    "RunListener",
    "RunStatus",
    "StartEvent",
    "StepConfig",
    "StepFailedError",
    "StepTimeoutError",
    "StopEvent",
    "UnknownEventTypeError",
    "WaitForEventTimeoutError",
    "Workflow",
    "WorkflowCancelledByUser",
    "WorkflowCancelledError",
    "WorkflowError",
    "WorkflowHandler",
    "WorkflowNotRunningError",
    "WorkflowRuntimeError",
    "WorkflowStalledError",
    "WorkflowTimeoutError",
    "WorkflowValidationError",
    "deserialize_event",
    "serialize_event",
    "step",
]
