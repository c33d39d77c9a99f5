"""OpenTelemetry spans: one per RPC (the grpc instrumentation), one per run, and one per
step attempt.

A run's span is a child of the RPC span that started it, so it joins the caller's trace
(the W3C ``traceparent`` of the request). Step attempt spans are children of the run span
and are current while the step's code runs, so spans a step makes itself nest under it. A
run resumed after a restart gets a new root span (flagged ``workflow.resumed``), linked to
nothing.
"""

from __future__ import annotations

import os
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from .observer import RunObserver

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


class Tracing:
    def __init__(self, provider: trace.TracerProvider, service: str) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("workflow-service")
        self._prefix = f"/{service}/"

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        """Spans for the workflow service's RPCs (health checks and reflection are left
        out: they are noise, and the instrumentation cannot wrap Health.Watch)."""
        prefix = self._prefix

        def traced(details: Any) -> bool:
            return str(details.method).startswith(prefix)

        interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=self.provider, filter_=traced
        )
        return interceptor

    def observe(self, run_id: str, workflow: str, resumed: bool) -> RunObserver:
        return _RunSpans(self.tracer, run_id, workflow, resumed)


class _RunSpans(RunObserver):
    __slots__ = ("context", "span", "steps", "tracer")

    def __init__(self, tracer: trace.Tracer, run_id: str, workflow: str, resumed: bool) -> None:
        self.tracer = tracer
        attributes: dict[str, Any] = {"workflow.run_id": run_id, "workflow.name": workflow}
        if resumed:
            attributes["workflow.resumed"] = True
        self.span = tracer.start_span(
            f"workflow.run {workflow}",
            # Started inside the RPC's span (its parent); a resumed run has none.
            context=otel_context.Context() if resumed else None,
            attributes=attributes,
        )
        self.context = trace.set_span_in_context(self.span)
        self.steps: dict[int, tuple[trace.Span, object]] = {}  # invocation -> span, token

    def step_started(self, step: str, invocation: int, attempt: int) -> None:
        span = self.tracer.start_span(
            f"workflow.step {step}",
            context=self.context,
            attributes={
                "workflow.step": step,
                "workflow.invocation": invocation,
                "workflow.attempt": attempt,
            },
        )
        # Called in the step's own task: the span is current for its code only.
        token = otel_context.attach(trace.set_span_in_context(span, self.context))
        self.steps[invocation] = (span, token)

    def step_finished(
        self, step: str, invocation: int, attempt: int, duration: float, error: BaseException | None
    ) -> None:
        entry = self.steps.pop(invocation, None)
        if entry is None:
            return
        span, token = entry
        otel_context.detach(token)  # type: ignore[arg-type]
        if error is not None:
            span.record_exception(error)
            span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
        span.end()

    def run_ended(self, status: str | None) -> None:
        # Attempts the run's end interrupted (cancelled, timed out) report no finish.
        for span, _ in self.steps.values():
            span.set_attribute("workflow.interrupted", True)
            span.end()
        self.steps.clear()
        span = self.span
        span.set_attribute("workflow.status", status or "INTERRUPTED")
        if status in _FAILED:
            span.set_status(trace.StatusCode.ERROR, status)
        span.end()
