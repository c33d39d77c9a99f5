"""The service's interceptors (tracing, metrics, auth) as wrappers of method handlers,
installed together as one grpc interceptor.

grpc.aio awaits every installed interceptor on every call. An interceptor that built a new
handler per call would cost an allocation and closures per call; the chain wraps a
method's handler with every wrapper that wants it the first time the method is called
and returns that same handler afterwards, so a call pays one interceptor step and the
wrappers' own per-call work inside the handler.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc

# The server's deadline is the grpc-timeout counted from when the request arrived, so it
# falls a transit time after the client's. A client whose deadline passed resets the stream,
# and that reset can reach the server just before the server's own deadline: a call
# cancelled this close to its deadline is counted as past it.
DEADLINE_SLACK_SECONDS = 0.1

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Metadata: TypeAlias = "Sequence[tuple[str, str | bytes]]"
Behavior = Callable[..., Any]  # a handler function: (request or request iterator, context)
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["Handler | None"]]


# The request metadata of the call being handled, as the interceptor is given it. The
# servicer context's invocation_metadata() converts it anew on every call, which costs
# more than some handlers; each call runs in a task of its own, so it sees its own.
_METADATA: contextvars.ContextVar[Metadata | None] = contextvars.ContextVar(
    "call_metadata", default=None
)


def call_metadata(context: grpc.aio.ServicerContext[Any, Any]) -> Metadata:
    """The request metadata of the call being handled."""
    metadata = _METADATA.get()
    if metadata is None:
        return context.invocation_metadata() or ()  # type: ignore[return-value]
    return metadata


class HandlerWrapper:
    """Wraps the behavior of each method it ``wants`` with ``wrap``."""

    def wants(self, method: str) -> bool:
        return True

    def wrap(self, method: str, handler: Handler, behavior: Behavior) -> Behavior:
        raise NotImplementedError


class InterceptorChain(grpc.aio.ServerInterceptor):
    """Several wrappers installed as one interceptor, the first outermost; each method's
    handler is wrapped once and reused."""

    def __init__(self, wrappers: Sequence[HandlerWrapper]) -> None:
        self.wrappers = tuple(wrappers)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}  # method -> (found, wrapped)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # an unknown method gets UNIMPLEMENTED as usual
        _METADATA.set(handler_call_details.invocation_metadata)
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        attr = behavior_attribute(handler)
        behavior = getattr(handler, attr)
        for wrapper in reversed(self.wrappers):
            if wrapper.wants(method):
                behavior = wrapper.wrap(method, handler, behavior)
        wrapped: Handler = handler._replace(**{attr: behavior})  # type: ignore[attr-defined]
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def behavior_attribute(handler: Handler) -> str:
    """Which of the handler's four behavior slots holds its function."""
    return ("stream_" if handler.request_streaming else "unary_") + (
        "stream" if handler.response_streaming else "unary"
    )


def call_code(
    context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None
) -> grpc.StatusCode:
    """The status a call ended with, from its context and what its handler raised (None:
    it returned)."""
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        # The call went away: the client cancelled it or its deadline passed.
        remaining = context.time_remaining()
        expired = remaining is not None and remaining <= DEADLINE_SLACK_SECONDS
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    code = context.code()  # set by abort()
    if code is not None:
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
