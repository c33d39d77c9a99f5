"""OpenTelemetry spans from a real server, caught by the SDK's in-memory exporter."""

import asyncio
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.trace import SpanKind, StatusCode

from service._pb import workflow_pb2 as pb
from service._pb import workflow_pb2_grpc as pb_grpc
from service.tracing import SPAN_EXPORT_LIMIT, export_remaining

from ..server_process import launch_server
from .conftest import Served, req, serve
from .test_metrics import until


def recording_provider(
    sampler: Sampler | None = None,
) -> tuple[TracerProvider, InMemorySpanExporter]:
    """An SDK provider (with ``sampler``, or the SDK's default one) whose finished spans
    the returned exporter keeps."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


class Traced(Served):
    exporter: InMemorySpanExporter

    async def spans(self, name: str, count: int) -> Sequence[ReadableSpan]:
        """The finished spans called ``name``, once there are ``count`` of them."""
        for _ in range(100):
            got = [s for s in self.exporter.get_finished_spans() if s.name == name]
            if len(got) >= count:
                return got
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(got)} spans named {name!r}, expected {count}")


@pytest.fixture
async def traced(store_url: str) -> AsyncIterator[Traced]:
    provider, exporter = recording_provider()
    server, port = await serve(store_url, tracer_provider=provider)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        t = Traced(server, port, channel)
        t.exporter = exporter
        yield t
    await server.stop(0)
    provider.shutdown()


def traceparent() -> tuple[int, int, tuple[tuple[str, str], ...]]:
    """A caller's trace and span id, and the metadata that carries them."""
    trace_id, span_id = secrets.randbits(128) | 1, secrets.randbits(64) | 1
    header = f"00-{trace_id:032x}-{span_id:016x}-01"
    return trace_id, span_id, (("traceparent", header),)


async def test_run_span_joins_the_callers_trace_and_parents_step_attempts(traced: Traced) -> None:
    trace_id, span_id, metadata = traceparent()
    resp = await traced.stub.RunWorkflow(req("flaky", failures=2, _wait=True), metadata=metadata)
    assert resp.run.status == pb.RUN_STATUS_SUCCEEDED

    [rpc] = await traced.spans(f"/{'workflow.v1.WorkflowService'}/RunWorkflow", 1)
    assert rpc.kind == SpanKind.SERVER
    assert rpc.context.trace_id == trace_id
    assert rpc.parent is not None and rpc.parent.span_id == span_id

    [run] = await traced.spans("workflow.run flaky", 1)
    assert run.context.trace_id == trace_id
    assert run.parent is not None and run.parent.span_id == rpc.context.span_id
    assert run.attributes is not None
    assert run.attributes["workflow.run_id"] == resp.run.run_id
    assert run.attributes["workflow.name"] == "flaky"
    assert run.attributes["workflow.status"] == "SUCCEEDED"
    assert run.status.status_code != StatusCode.ERROR

    steps = sorted(
        await traced.spans("workflow.step attempt", 3),
        key=lambda s: (s.attributes or {})["workflow.attempt"],
    )
    assert [(s.attributes or {})["workflow.attempt"] for s in steps] == [1, 2, 3]
    for s in steps:
        assert s.parent is not None and s.parent.span_id == run.context.span_id
        assert s.context.trace_id == trace_id
        assert (s.attributes or {})["workflow.step"] == "attempt"
    assert [s.status.status_code for s in steps] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert [e.name for e in steps[0].events] == ["exception"]


async def test_failed_run_span_is_an_error(traced: Traced) -> None:
    resp = await traced.stub.RunWorkflow(req("failing", _wait=True))
    assert resp.run.status == pb.RUN_STATUS_FAILED
    [run] = await traced.spans("workflow.run failing", 1)
    assert run.status.status_code == StatusCode.ERROR
    assert (run.attributes or {})["workflow.status"] == "FAILED"
    # No traceparent: the RPC span starts a trace and the run belongs to it.
    [rpc] = await traced.spans("/workflow.v1.WorkflowService/RunWorkflow", 1)
    assert rpc.parent is None
    assert run.context.trace_id == rpc.context.trace_id


async def test_cancelled_run_ends_its_unfinished_step_span(traced: Traced) -> None:
    run = await traced.start("sleep", seconds=30)
    await wait_for_step(traced.server.manager, run.run_id)
    await traced.stub.CancelRun(pb.CancelRunRequest(run_id=run.run_id))
    [span] = await traced.spans("workflow.run sleep", 1)
    assert (span.attributes or {})["workflow.status"] == "CANCELLED"
    [step] = await traced.spans("workflow.step sleep", 1)
    assert (step.attributes or {})["workflow.interrupted"] is True
    assert step.parent is not None and step.parent.span_id == span.context.span_id


async def test_step_span_is_current_while_the_step_runs(traced: Traced) -> None:
    resp = await traced.stub.RunWorkflow(req("current_span", _wait=True))
    [step] = await traced.spans("workflow.step look", 1)
    assert resp.run.result.string_value == format(step.context.span_id, "016x")


async def test_run_resumed_after_a_restart_gets_a_new_root_span(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    (one, first), (two, second) = recording_provider(), recording_provider()
    providers = [one, two]

    server, port = await serve(url, tracer_provider=providers[0])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        run = await Served(server, port, channel).start("sleep", seconds=0.5)
    await wait_for_step(server.manager, run.run_id)
    await server.stop(0)  # left for the next server to resume
    [gone] = [s for s in first.get_finished_spans() if s.name == "workflow.run sleep"]
    assert (gone.attributes or {})["workflow.status"] == "INTERRUPTED"

    server, _ = await serve(url, tracer_provider=providers[1])
    try:
        ended = await server.manager.wait(run.run_id)
        assert ended.status == pb.RUN_STATUS_SUCCEEDED
    finally:
        await server.stop(0)
    [resumed] = [s for s in second.get_finished_spans() if s.name == "workflow.run sleep"]
    assert resumed.parent is None
    attributes = resumed.attributes or {}
    assert attributes["workflow.resumed"] is True
    assert attributes["workflow.run_id"] == run.run_id
    assert attributes["workflow.status"] == "SUCCEEDED"
    for provider in providers:
        provider.shutdown()


async def wait_for_step(manager: Any, run_id: str) -> None:
    """Until the run's first step is under way."""
    for _ in range(200):
        active = manager.active.get(run_id)
        if active is not None and active.run.last_sequence >= 2:  # RUN_STARTED, STEP_STARTED
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the run's step never started")


async def test_tracing_and_metrics_together(store_url: str) -> None:
    provider, exporter = recording_provider()
    server, port = await serve(store_url, tracer_provider=provider, metrics=True, metrics_port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            t = Traced(server, port, channel)
            t.exporter = exporter
            _, _, metadata = traceparent()
            for _ in range(2):
                resp = await t.stub.RunWorkflow(
                    req("flaky", failures=1, _wait=True), metadata=metadata
                )
                assert resp.run.status == pb.RUN_STATUS_SUCCEEDED
            assert len(await t.spans("workflow.run flaky", 2)) == 2
            assert len(await t.spans("workflow.step attempt", 4)) == 4
            assert server.metrics_endpoint is not None
            got = await until(
                2,
                server.metrics_endpoint.port,
                "grpc_server_handled_total",
                grpc_method="RunWorkflow",
                grpc_code="OK",
            )
            assert got.value("workflow_step_failures_total", workflow="flaky") == 2
            assert got.value("workflow_runs_ended_total", workflow="flaky", status="SUCCEEDED") == 2
    finally:
        await server.stop(0)
        provider.shutdown()


async def test_stopping_exports_the_buffered_spans() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    provider.get_tracer("test").start_span("buffered").end()
    assert exporter.get_finished_spans() == ()  # still in the batch
    assert await export_remaining(provider, limit=5)
    assert [s.name for s in exporter.get_finished_spans()] == ["buffered"]


async def test_an_unreachable_collector_holds_the_stop_no_longer_than_the_limit() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    proc, port = await launch_server(
        "--store", "memory", "--tracing", "--otlp-endpoint", f"http://127.0.0.1:{closed}"
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        await stub.RunWorkflow(req("echo", _wait=True, message="hi"))  # spans to export
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    log = await asyncio.wait_for(proc.stderr.read(), 20)
    assert await proc.wait() == 0
    # The exporter alone would retry for about 7 s.
    assert time.monotonic() - began < SPAN_EXPORT_LIMIT + 2
    assert b"event=spans_not_exported" in log
