"""The service's interceptors (tracing, metrics, auth) as wrappers of method handlers,
applied to every service's handlers as the server takes them.

grpc.aio runs its own interceptors as a chain of coroutines on every call, and an
interceptor that built a new handler per call would also cost an allocation and closures
per call. Here each service's generic handler is itself wrapped: the first time a method
is called, its handler is wrapped with every wrapper that wants it, and that same handler
is returned afterwards, so a call pays a dict lookup and the wrappers' own per-call work
inside the handler.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
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


# The request metadata of the call being handled, as the handler lookup is given it. The
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


class GenericOnly:
    """A grpc.aio server as generated ``add_*Servicer_to_server`` functions see it: their
    handlers are added as generic handlers only, each wrapped by ``wrappers`` (the first
    outermost).

    Those functions also register each method with grpc's core. grpc.aio then keeps one
    pending request per registered method and, for every call it accepts, waits on all of
    them at once (``asyncio.wait`` over a dozen tasks here): about 6% of the server's work
    per RunWorkflow. Generic handlers share one pending request and are found by a dict
    lookup per service."""

    def __init__(self, server: grpc.aio.Server, wrappers: Sequence[HandlerWrapper] = ()) -> None:
        self._server = server
        self._wrappers = tuple(wrappers)

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        if self._wrappers:
            handlers = [WrappedService(h, self._wrappers) for h in handlers]
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        """Not registered: served by the generic handler added with them."""


class WrappedService(grpc.GenericRpcHandler):
    """A service's generic handler whose method handlers come wrapped by ``wrappers``, each
    method's once, then reused."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrappers: Sequence[HandlerWrapper]) -> None:
        self._inner = inner
        self._wrappers = tuple(wrappers)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}  # method -> (found, wrapped)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None  # another service's method, or an unknown one (UNIMPLEMENTED)
        # Looked up in the call's own task, which then runs the handler.
        _METADATA.set(handler_call_details.invocation_metadata)
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        attr = behavior_attribute(handler)
        behavior = getattr(handler, attr)
        for wrapper in reversed(self._wrappers):
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
