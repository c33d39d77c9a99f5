"""Prometheus metrics, scraped over HTTP from a real server's /metrics endpoint."""

import asyncio
import socket
import sys
import urllib.request
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from service._pb import workflow_pb2 as pb
from service.interceptors import DEADLINE_SLACK_SECONDS, call_code

from .conftest import Served, req, serve

WF = "workflow.v1.WorkflowService"


class Scrape:
    """One scrape: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples = [
            s for family in text_string_to_metric_families(text) for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )


async def scrape(port: int) -> Scrape:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return str(r.read().decode())

    return Scrape(await asyncio.to_thread(get))


@pytest.fixture
async def metered(store_url: str) -> AsyncIterator[Served]:
    server, port = await serve(store_url, metrics=True, metrics_port=0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Served(server, port, channel)
    await server.stop(0)


def metrics_port(served: Served) -> int:
    assert served.server.metrics_endpoint is not None
    return served.server.metrics_endpoint.port


async def until(expected: float, port: int, name: str, **labels: str) -> Scrape:
    """Scrape until ``name{labels}`` reaches ``expected`` (the server may still be finishing
    a call the client already saw end)."""
    for _ in range(100):
        got = await scrape(port)
        if got.value(name, **labels) == expected:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name}{labels} = {got.value(name, **labels)}, expected {expected}")


async def test_unary_calls_are_counted_by_method_and_code(metered: Served) -> None:
    port = metrics_port(metered)
    run = (await metered.stub.RunWorkflow(req("flaky", failures=2, _wait=True))).run
    assert run.status == pb.RUN_STATUS_SUCCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await metered.stub.GetRun(pb.GetRunRequest(run_id="no-such-run"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    got = await until(1, port, "grpc_server_handled_total", grpc_method="GetRun")
    rpc = {"grpc_service": WF, "grpc_type": "unary"}
    assert got.value("grpc_server_started_total", grpc_method="RunWorkflow", **rpc) == 1
    assert got.value("grpc_server_started_total", grpc_method="GetRun", **rpc) == 1
    handled = "grpc_server_handled_total"
    assert got.value(handled, grpc_method="RunWorkflow", grpc_code="OK", **rpc) == 1
    assert got.value(handled, grpc_method="GetRun", grpc_code="NOT_FOUND", **rpc) == 1
    assert got.value(handled, grpc_method="GetRun", grpc_code="OK", **rpc) == 0
    assert got.value("grpc_server_handling_seconds_count", grpc_method="RunWorkflow") == 1

    # The run: three attempts of one step, two of them failed, and its events by kind.
    flaky = {"workflow": "flaky"}
    assert got.value("workflow_runs_started_total", **flaky) == 1
    assert got.value("workflow_runs_ended_total", status="SUCCEEDED", **flaky) == 1
    assert got.value("workflow_runs_in_flight", **flaky) == 0
    steps = {"step": "attempt", **flaky}
    assert got.value("workflow_step_duration_seconds_count", **steps) == 3
    assert got.value("workflow_step_failures_total", **steps) == 2
    assert got.value("workflow_events_total", kind="STEP_STARTED", **flaky) == 3
    assert got.value("workflow_events_total", kind="RUN_SUCCEEDED", **flaky) == 1
    # Batch commits are timed; appends to memory are not (nothing to wait for).
    appends = got.value("workflow_store_append_seconds_count")
    assert appends >= 1 if metered.server.manager.store.durable else appends == 0


async def test_streams_are_counted_when_they_end_also_when_cancelled(metered: Served) -> None:
    port = metrics_port(metered)
    done = [
        e
        async for e in metered.stub.StreamEvents(
            pb.StreamEventsRequest(start=req("echo", message="hi"))
        )
    ]
    assert done[-1].kind == pb.EVENT_KIND_RUN_SUCCEEDED

    call = metered.stub.StreamEvents(
        pb.StreamEventsRequest(start=req("ticker", count=1000, interval_ms=50))
    )
    async for _ in call:
        break  # the stream is open on the server now
    during = await scrape(port)
    assert during.value("workflow_open_streams") == 1
    assert during.value("workflow_runs_in_flight", workflow="ticker") == 1
    call.cancel()

    stream = {"grpc_method": "StreamEvents", "grpc_type": "server_stream"}
    got = await until(1, port, "grpc_server_handled_total", grpc_code="CANCELLED", **stream)
    assert got.value("grpc_server_handled_total", grpc_code="OK", **stream) == 1
    assert got.value("grpc_server_started_total", **stream) == 2
    assert got.value("grpc_server_msg_sent_total", **stream) >= len(done) + 1
    assert got.value("workflow_open_streams") == 0


async def test_aborted_stream_has_its_code(metered: Served) -> None:
    port = metrics_port(metered)
    call = metered.stub.StreamEvents(pb.StreamEventsRequest(run_id="no-such-run"))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call.read()
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    got = await until(1, port, "grpc_server_handled_total", grpc_method="StreamEvents")
    assert got.value("grpc_server_handled_total", grpc_code="NOT_FOUND") == 1
    assert got.value("workflow_open_streams") == 0


async def test_servers_in_one_process_keep_their_own_metrics(metered: Served) -> None:
    other, _ = await serve("memory", metrics=True, metrics_port=0)
    try:
        assert other.metrics_endpoint is not None
        await metered.start("echo", message="hi")
        await until(1, metrics_port(metered), "workflow_runs_started_total", workflow="echo")
        assert (await scrape(other.metrics_endpoint.port)).value("workflow_runs_started_total") == 0
    finally:
        await other.stop(0)


async def test_metrics_off_installs_nothing(served: Served) -> None:
    server = served.server
    assert server.metrics is None and server.metrics_endpoint is None
    assert server.manager.observers == ()
    assert server.manager.store.observe_append is None
    run = await served.start("echo", message="hi")
    assert run.run_id


async def test_call_past_its_deadline_is_deadline_exceeded(metered: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await metered.stub.RunWorkflow(req("sleep", seconds=5, _wait=True), timeout=0.2)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    got = await until(
        1, metrics_port(metered), "grpc_server_handled_total", grpc_method="RunWorkflow"
    )
    assert got.value("grpc_server_handled_total", grpc_code="DEADLINE_EXCEEDED") == 1


class _EndedCall:
    """What ``call_code`` reads of a call's context: its deadline and any aborted code."""

    def __init__(self, remaining: float | None, code: grpc.StatusCode | None = None) -> None:
        self.remaining, self.aborted = remaining, code

    def time_remaining(self) -> float | None:
        return self.remaining

    def code(self) -> grpc.StatusCode | None:
        return self.aborted


@pytest.mark.parametrize(
    ("remaining", "error", "code"),
    [
        # The server's own deadline fired.
        (0.0, asyncio.CancelledError(), grpc.StatusCode.DEADLINE_EXCEEDED),
        # The client's deadline fired first and its reset arrived just before the server's.
        (0.002, asyncio.CancelledError(), grpc.StatusCode.DEADLINE_EXCEEDED),
        (DEADLINE_SLACK_SECONDS, GeneratorExit(), grpc.StatusCode.DEADLINE_EXCEEDED),
        # A client that cancelled well before its deadline, or had none.
        (DEADLINE_SLACK_SECONDS + 0.5, asyncio.CancelledError(), grpc.StatusCode.CANCELLED),
        (None, asyncio.CancelledError(), grpc.StatusCode.CANCELLED),
        (0.0, None, grpc.StatusCode.OK),
        (0.0, ValueError("bug"), grpc.StatusCode.UNKNOWN),
    ],
)
def test_a_call_that_went_away_near_its_deadline_counts_as_past_it(
    remaining: float | None, error: BaseException | None, code: grpc.StatusCode
) -> None:
    context = cast("grpc.aio.ServicerContext[Any, Any]", _EndedCall(remaining))
    assert call_code(context, error) == code


def test_an_aborted_call_has_the_code_it_was_aborted_with() -> None:
    context = cast("grpc.aio.ServicerContext[Any, Any]", _EndedCall(5.0, grpc.StatusCode.NOT_FOUND))
    assert call_code(context, Exception("aborted")) == grpc.StatusCode.NOT_FOUND


async def test_metrics_port_in_use_stops_the_server_with_a_clear_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            *("--port", "0", "--store", "memory", "--metrics-port", str(busy)),
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert f"metrics endpoint: cannot listen on 127.0.0.1:{busy}".encode() in err


async def test_health_watch_written_with_context_write_is_counted(metered: Served) -> None:
    health = health_pb2_grpc.HealthStub(metered.channel)
    call = health.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await call.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    call.cancel()
    watch = {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Watch"}
    got = await until(1, metrics_port(metered), "grpc_server_handled_total", **watch)
    assert got.value("grpc_server_handled_total", grpc_code="CANCELLED", **watch) == 1
    assert got.value("grpc_server_started_total", grpc_type="server_stream", **watch) == 1
    assert got.value("workflow_open_streams") == 0
