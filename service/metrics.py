"""Prometheus metrics: standard gRPC server metrics and the workflow engine's own.

Each server has its own registry (several servers may share a process). The series are
:mod:`.series`' lock-free ones, looked up once per method, workflow, step or status and
then kept, so the per-call and per-event cost is an addition.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, start_http_server

from ._pb import workflow_pb2 as pb
from .interceptors import Behavior, Handler, HandlerWrapper, call_code
from .observer import RunObserver
from .series import CounterSeries, Family, HistogramSeries, SeriesRegistry

_STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class Metrics:
    """Every metric of one server, in its own registry."""

    def __init__(self, streaming_methods: frozenset[str] = frozenset()) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(r := SeriesRegistry())
        rpc = ("grpc_type", "grpc_service", "grpc_method")
        self.rpc_started = r.counter("grpc_server_started", "RPCs started on the server.", rpc)
        self.rpc_handled = r.counter(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status code.",
            (*rpc, "grpc_code"),
        )
        self.rpc_seconds = r.histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC until the server finished it (a stream: its end).",
            rpc,
        )
        self.rpc_msg_sent = r.counter(
            "grpc_server_msg_sent",
            "Messages the server sent on streams, counted when each stream ends.",
            rpc,
        )
        self.open_streams = r.gauge(
            "workflow_open_streams", "StreamEvents calls in progress."
        ).labels()
        self.runs_started = r.counter("workflow_runs_started", "Runs started.", ("workflow",))
        self.runs_resumed = r.counter(
            "workflow_runs_resumed", "Runs resumed from the store after a restart.", ("workflow",)
        )
        self.runs_ended = r.counter(
            "workflow_runs_ended", "Runs ended, by final status.", ("workflow", "status")
        )
        self.runs_in_flight = r.gauge(
            "workflow_runs_in_flight", "Runs going on now.", ("workflow",)
        )
        self.step_seconds = r.histogram(
            "workflow_step_duration_seconds",
            "Duration of each step attempt, failed ones included.",
            ("workflow", "step"),
        )
        self.step_failures = r.counter(
            "workflow_step_failures",
            "Step attempts that raised (each retry that fails counts).",
            ("workflow", "step"),
        )
        self.events = r.counter(
            "workflow_events", "Events appended to run logs, by kind.", ("workflow", "kind")
        )
        self.store_append = r.histogram(
            "workflow_store_append_seconds",
            "Time to store appended events: one batch commit (sqlite) or one append (memory).",
            buckets=_STORE_BUCKETS,
        ).labels()
        self._streaming_methods = streaming_methods
        self._workflows: dict[str, _WorkflowSeries] = {}
        self._methods: dict[str, _MethodSeries] = {}

    # ---- runs -----------------------------------------------------------------------------

    def observe(self, run_id: str, workflow: str, resumed: bool) -> RunObserver:
        series = self._workflows.get(workflow)
        if series is None:
            series = self._workflows[workflow] = _WorkflowSeries(self, workflow)
        # Series are updated in place on the hot paths (see .series): no call per update.
        (series.resumed if resumed else series.started).value += 1
        series.in_flight.value += 1
        return _RunMetrics(series)

    # ---- RPCs -----------------------------------------------------------------------------

    def method(self, method: str, kind: str) -> _MethodSeries:
        series = self._methods.get(method)
        if series is None:
            series = self._methods[method] = _MethodSeries(self, method, kind)
        return series

    def serve(self, host: str, port: int) -> MetricsEndpoint:
        """Serve /metrics over HTTP on a daemon thread; port 0 picks a free port."""
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise OSError(f"metrics endpoint: cannot listen on {host}:{port}: {e}") from e
        return MetricsEndpoint(server, thread)


class MetricsEndpoint:
    def __init__(self, server: WSGIServer, thread: Thread) -> None:
        self.server = server
        self.thread = thread
        self.port: int = server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _WorkflowSeries:
    """One workflow's label children."""

    __slots__ = (
        "ended",
        "events",
        "failures",
        "in_flight",
        "metrics",
        "resumed",
        "started",
        "steps",
        "workflow",
    )

    def __init__(self, metrics: Metrics, workflow: str) -> None:
        self.metrics = metrics
        self.workflow = workflow
        self.started = metrics.runs_started.labels(workflow)
        self.resumed = metrics.runs_resumed.labels(workflow)
        self.in_flight = metrics.runs_in_flight.labels(workflow)
        self.ended: dict[str, CounterSeries] = {}
        self.steps: dict[str, HistogramSeries] = {}
        self.failures: dict[str, CounterSeries] = {}
        self.events = _EventCounts(metrics.events, workflow)

    def step(self, step: str) -> HistogramSeries:
        child = self.steps.get(step)
        if child is None:
            child = self.steps[step] = self.metrics.step_seconds.labels(self.workflow, step)
        return child

    def failure(self, step: str) -> CounterSeries:
        child = self.failures.get(step)
        if child is None:
            child = self.failures[step] = self.metrics.step_failures.labels(self.workflow, step)
        return child

    def end(self, status: str) -> CounterSeries:
        child = self.ended.get(status)
        if child is None:
            child = self.ended[status] = self.metrics.runs_ended.labels(self.workflow, status)
        return child


class _EventCounts(dict[int, CounterSeries]):
    """A workflow's event counters by kind, each made when first counted."""

    def __init__(self, family: Family[CounterSeries], workflow: str) -> None:
        super().__init__()
        self.family = family
        self.workflow = workflow

    def __missing__(self, kind: int) -> CounterSeries:
        name = pb.EventKind.Name(kind).removeprefix("EVENT_KIND_")  # type: ignore[arg-type]
        child = self[kind] = self.family.labels(self.workflow, name)
        return child


class _RunMetrics(RunObserver):
    __slots__ = ("event_counts", "series")

    def __init__(self, series: _WorkflowSeries) -> None:
        self.series = series
        self.event_counts = series.events  # the run counts its events itself

    def step_finished(
        self, step: str, invocation: int, attempt: int, duration: float, error: BaseException | None
    ) -> None:
        series = self.series
        (series.steps.get(step) or series.step(step)).observe(duration)
        if error is not None:
            series.failure(step).value += 1

    def run_ended(self, status: str | None) -> None:
        series = self.series
        series.in_flight.value -= 1
        if status is not None:
            (series.ended.get(status) or series.end(status)).value += 1


# ---- the gRPC interceptor -----------------------------------------------------------------

_OK = grpc.StatusCode.OK
_RPC_TYPES = {
    (False, False): "unary",
    (False, True): "server_stream",
    (True, False): "client_stream",
    (True, True): "bidi_stream",
}


class _MethodSeries:
    """One RPC method's label children."""

    __slots__ = ("handled", "labels", "metrics", "ok", "open", "seconds", "sent", "started")

    def __init__(self, metrics: Metrics, method: str, kind: str) -> None:
        service, _, name = method.lstrip("/").rpartition("/")
        self.metrics = metrics
        self.labels = (kind, service, name)
        self.started = metrics.rpc_started.labels(*self.labels)
        self.seconds = metrics.rpc_seconds.labels(*self.labels)
        self.sent = metrics.rpc_msg_sent.labels(*self.labels)
        self.handled: dict[grpc.StatusCode, CounterSeries] = {}
        self.ok = self.handled[_OK] = metrics.rpc_handled.labels(*self.labels, _OK.name)
        self.open = metrics.open_streams if method in metrics._streaming_methods else None

    def done(self, code: grpc.StatusCode, began: float) -> None:
        # A StatusCode's hash is a Python call: the common code skips the lookup.
        child = self.ok if code is _OK else self.handled.get(code)
        if child is None:
            child = self.metrics.rpc_handled.labels(*self.labels, code.name)
            self.handled[code] = child
        child.value += 1
        self.seconds.observe(time.perf_counter() - began)


Ctx = grpc.aio.ServicerContext[Any, Any]


def _unary_response(
    series: _MethodSeries, behavior: Callable[[Any, Ctx], Awaitable[Any]]
) -> Callable[[Any, Ctx], Awaitable[Any]]:
    async def handle(request: Any, context: Ctx) -> Any:
        series.started.value += 1
        began = time.perf_counter()
        try:
            response = await behavior(request, context)
        except BaseException as e:
            series.done(call_code(context, e), began)
            raise
        if context.code() is None:  # OK, the common case: counted without two calls
            series.ok.value += 1
            series.seconds.observe(time.perf_counter() - began)
        else:
            series.done(call_code(context, None), began)
        return response

    return handle


def _streamed_response(
    series: _MethodSeries, behavior: Callable[[Any, Ctx], AsyncGenerator[Any, None]]
) -> Callable[[Any, Ctx], AsyncGenerator[Any, None]]:
    async def handle(request: Any, context: Ctx) -> AsyncGenerator[Any, None]:
        series.started.inc()
        if series.open is not None:
            series.open.inc()
        began = time.perf_counter()
        sent = 0
        try:
            async with contextlib.aclosing(behavior(request, context)) as responses:
                async for response in responses:
                    sent += 1
                    yield response
        except BaseException as e:
            series.done(call_code(context, e), began)
            raise
        else:
            series.done(call_code(context, None), began)
        finally:
            if sent:
                series.sent.inc(sent)
            if series.open is not None:
                series.open.dec()

    return handle


def _written_response(
    series: _MethodSeries, behavior: Callable[[Any, Ctx], Awaitable[None]]
) -> Callable[[Any, Ctx], Awaitable[None]]:
    """A streaming handler that writes with ``context.write`` (its messages go uncounted)."""
    unary = _unary_response(series, behavior)

    async def handle(request: Any, context: Ctx) -> None:
        if series.open is not None:
            series.open.inc()
        try:
            await unary(request, context)
        finally:
            if series.open is not None:
                series.open.dec()

    return handle


class MetricsInterceptor(HandlerWrapper):
    """Counts and times every RPC it sees: install it before interceptors that refuse
    calls, so refused calls count too."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def wrap(self, method: str, handler: Handler, behavior: Behavior) -> Behavior:
        kind = _RPC_TYPES[(handler.request_streaming, handler.response_streaming)]
        series = self.metrics.method(method, kind)
        if not handler.response_streaming:
            return _unary_response(series, behavior)
        if inspect.isasyncgenfunction(behavior):
            return _streamed_response(series, behavior)
        return _written_response(series, behavior)
