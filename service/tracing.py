"""OpenTelemetry spans: one per RPC, one per run, and one per step attempt.

RPC spans follow OpenTelemetry's conventions for gRPC servers (the span named after the
full method, kind SERVER, ``rpc.system``/``rpc.service``/``rpc.method`` and
``rpc.grpc.status_code``, ERROR status when the code is not OK), parented by the caller's
context from the request metadata through the configured propagators. They come from the
interceptor here rather than from opentelemetry-instrumentation-grpc, whose aio interceptor
rebuilds the handler, copies the metadata and parses the peer on every call, and proxies the
servicer context: several times the cost of the span itself on a short call.

A run's span is a child of the RPC span that started it, so it joins the caller's trace
(the W3C ``traceparent`` of the request). Step attempt spans are children of the run span
and are current while the step's code runs, so spans a step makes itself nest under it. A
run resumed after a restart gets a new root span (flagged ``workflow.resumed``), linked to
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation import _SPAN_KEY

from .interceptors import Behavior, Handler, HandlerWrapper, call_code, call_metadata
from .observer import ObserveRun, RunObserver
from .spans import (
    LeanSpan,
    LeanTracer,
    UnsampledSpan,
    attach,
    current_context,
    detach,
    service_tracer,
    with_span,
)

_FAILED = frozenset({"FAILED", "TIMED_OUT"})


def make_provider(otlp_endpoint: str | None) -> SdkTracerProvider:
    """An SDK provider that exports by OTLP/gRPC to ``otlp_endpoint`` (or the standard
    OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT), or makes spans without exporting them when
    neither is set."""
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "workflow"}
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    if otlp_endpoint or any(
        os.environ.get(v)
        for v in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    return provider


# How long a stopping server waits for its buffered spans to be exported. A reachable
# collector takes milliseconds; an unreachable one would hold the stop for the exporter's
# retries (about 7 s).
SPAN_EXPORT_LIMIT = 3.0


async def export_remaining(provider: SdkTracerProvider, limit: float = SPAN_EXPORT_LIMIT) -> bool:
    """Shut ``provider`` down, exporting the spans it still buffers, waiting at most
    ``limit`` seconds; False when it was still exporting then. The export goes on in a
    daemon thread, which does not hold up the process's exit."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def export() -> None:
        try:
            provider.shutdown()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(done.set)

    threading.Thread(target=export, name="span-export", daemon=True).start()
    try:
        await asyncio.wait_for(done.wait(), limit)
    except TimeoutError:
        return False
    return True


class Tracing:
    def __init__(self, provider: trace.TracerProvider, service: str) -> None:
        self.provider = provider
        self.tracer = service_tracer(provider, "workflow-service")
        self._prefix = f"/{service}/"
        # The observer of each run: _RunSpans(tracer, names, run_id, workflow, resumed).
        self.observe: ObserveRun = functools.partial(_RunSpans, self.tracer, {})

    def interceptor(self) -> HandlerWrapper:
        """Spans for the workflow service's RPCs (health checks and reflection are left
        out: they are noise)."""
        return _RpcSpans(self.tracer, self._prefix)


# The code below runs for every traced call, run and step; it spends no function call it
# can do without (each costs more than most of the work around it).

_Names = dict[str, tuple[str, dict[str, str]]]  # workflow -> its run span's name, its steps'


class _RunSpans(RunObserver):
    __slots__ = ("span", "step_names", "steps", "tracer")

    def __init__(
        self, tracer: trace.Tracer, names: _Names, run_id: str, workflow: str, resumed: bool
    ) -> None:
        self.tracer = tracer
        known = names.get(workflow)
        if known is None:
            known = names[workflow] = (f"workflow.run {workflow}", {})
        name, self.step_names = known
        attributes: dict[str, Any] = {"workflow.run_id": run_id, "workflow.name": workflow}
        if resumed:
            attributes["workflow.resumed"] = True
        # Started inside the RPC's span (its parent); a resumed run has none.
        if resumed:
            self.span = tracer.start_span(name, otel_context.Context(), attributes=attributes)
        elif type(tracer) is LeanTracer:
            parent = current_context().get(_SPAN_KEY)
            self.span = tracer.start_child(name, parent, None, attributes)
        else:
            self.span = tracer.start_span(name, attributes=attributes)
        self.steps: dict[int, tuple[trace.Span, object]] = {}  # invocation -> span, token

    def step_started(self, step: str, invocation: int, attempt: int) -> None:
        attributes: dict[str, Any] = {
            "workflow.step": step,
            "workflow.invocation": invocation,
            "workflow.attempt": attempt,
        }
        name = self.step_names.get(step)
        if name is None:
            name = self.step_names[step] = f"workflow.step {step}"
        # Called in the step's own task, whose context is the one the run started in (as
        # the tasks of a run copy it): the step's span is made current for its code only.
        tracer = self.tracer
        if type(tracer) is LeanTracer:
            span = tracer.start_child(name, self.span, None, attributes)
        else:
            span = tracer.start_span(name, with_span(self.span), attributes=attributes)
        token = attach(Context({**current_context(), _SPAN_KEY: span}))
        self.steps[invocation] = (span, token)

    def step_finished(
        self, step: str, invocation: int, attempt: int, duration: float, error: BaseException | None
    ) -> None:
        entry = self.steps.pop(invocation, None)
        if entry is None:
            return
        span, token = entry
        detach(token)
        if error is not None:
            span.record_exception(error)
            span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
        span.end()

    def run_ended(self, status: str | None) -> None:
        # Attempts the run's end interrupted (cancelled, timed out) report no finish.
        if self.steps:
            for span, _ in self.steps.values():
                span.set_attribute("workflow.interrupted", True)
                span.end()
            self.steps.clear()
        span = self.span
        if type(span) is LeanSpan:  # (its attribute set directly: one made here is valid)
            if span._end_time is None:
                span._attributes["workflow.status"] = status or "INTERRUPTED"  # type: ignore[index]
        else:
            span.set_attribute("workflow.status", status or "INTERRUPTED")
        if status in _FAILED:
            span.set_status(trace.StatusCode.ERROR, status)
        span.end()


# ---- RPC spans ----------------------------------------------------------------------------

Ctx = grpc.aio.ServicerContext[Any, Any]
_OK = grpc.StatusCode.OK
_SERVER = trace.SpanKind.SERVER
_CODE_NUMBERS = {code: code.value[0] for code in grpc.StatusCode}


class _RpcSpans(HandlerWrapper):
    """A SERVER span around each call of the methods under ``prefix``."""

    def __init__(self, tracer: trace.Tracer, prefix: str) -> None:
        self._tracer = tracer
        self._prefix = prefix

    def wants(self, method: str) -> bool:
        return method.startswith(self._prefix)

    def wrap(self, method: str, handler: Handler, behavior: Behavior) -> Behavior:
        start = self._tracer.start_span
        service, _, name = method.lstrip("/").rpartition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        fields = frozenset(propagate.get_global_textmap().fields)

        def begin(context: Ctx) -> tuple[trace.Span, object]:
            carrier = None  # the caller's trace context, when it sent one
            for key, value in call_metadata(context):
                if key in fields:
                    if carrier is None:
                        carrier = {}
                    carrier[key] = value
            parent = propagate.extract(carrier) if carrier else None
            span = start(method, parent, _SERVER, attributes)
            return span, attach(with_span(span, parent))

        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Ctx) -> AsyncIterator[Any]:
                span, token = begin(context)
                error: BaseException | None = None
                try:
                    async for item in behavior(request, context):
                        yield item
                except BaseException as e:
                    error = e
                    raise
                finally:
                    detach(token)
                    _end(span, context, error)

            return stream

        async def call(request: Any, context: Ctx) -> Any:
            span, token = begin(context)
            try:
                response = await behavior(request, context)
            except BaseException as e:
                detach(token)
                _end(span, context, e)
                raise
            detach(token)
            if type(span) is LeanSpan and context.code() is None:  # OK: the common case
                span._attributes["rpc.grpc.status_code"] = 0  # type: ignore[index]
                span.end()
            elif type(span) is not UnsampledSpan:  # which records nothing: nothing to end
                _end(span, context, None)
            return response

        return call


def _end(span: trace.Span, context: Ctx, error: BaseException | None) -> None:
    code = call_code(context, error)
    if code is grpc.StatusCode.UNKNOWN and error is not None:
        span.record_exception(error)  # raised, not aborted: worth its traceback
    span.set_attribute("rpc.grpc.status_code", _CODE_NUMBERS[code])
    if code is not _OK:
        span.set_status(trace.StatusCode.ERROR, f"{code.name}: {context.details() or ''}")
    span.end()
