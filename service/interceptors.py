"""The shape the service's interceptors share: wrap each method's handler once.

grpc.aio runs every interceptor on every call. An interceptor that built a new handler per
call would cost an allocation and closures per call and would stop the interceptors before
it from reusing what they built; these wrap a method's handler the first time it is seen
and return the same wrapped handler afterwards, doing their per-call work inside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Behavior = Callable[..., Any]  # a handler function: (request or request iterator, context)
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["Handler | None"]]


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the behavior of each method it ``wants`` with ``wrap``, once per method."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}  # method -> (found, wrapped)

    def wants(self, method: str) -> bool:
        return True

    def wrap(self, method: str, handler: Handler, behavior: Behavior) -> Behavior:
        raise NotImplementedError

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not self.wants(method):
            return handler  # an unknown method gets UNIMPLEMENTED as usual
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        attr = behavior_attribute(handler)
        wrapped: Handler = handler._replace(  # type: ignore[attr-defined]
            **{attr: self.wrap(method, handler, getattr(handler, attr))}
        )
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
        expired = remaining is not None and remaining <= 0
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    code = context.code()  # set by abort()
    if code is not None:
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


class InterceptorChain(WrappingInterceptor):
    """Several wrapping interceptors installed as one, the first outermost.

    grpc.aio awaits every installed interceptor on every call, one coroutine each; the
    chain wraps each method once with all its members and costs one such step per call."""

    def __init__(self, members: Sequence[WrappingInterceptor]) -> None:
        super().__init__()
        self.members = tuple(members)

    def wants(self, method: str) -> bool:
        return any(m.wants(method) for m in self.members)

    def wrap(self, method: str, handler: Handler, behavior: Behavior) -> Behavior:
        for member in reversed(self.members):
            if member.wants(method):
                behavior = member.wrap(method, handler, behavior)
        return behavior
