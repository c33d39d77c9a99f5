"""Transport limits: concurrent streams per connection and keepalive on dead peers."""

import asyncio
import time

import grpc
import pytest

from service._pb import workflow_pb2 as pb
from service._pb import workflow_pb2_grpc as pb_grpc
from service.config import Config, parse_args
from service.server import server_options
from service.store.base import Store
from tests.clients.helpers import TcpProxy

from .conftest import req, serve


def live_followers(store: Store, run_id: str) -> int:
    """Followers of the run's log waiting for its next event."""
    log = store._logs[run_id]  # type: ignore[attr-defined]
    return sum(not w.done() for w in log.waiters)


async def wait_until(predicate, timeout: float) -> float:
    began = time.monotonic()
    while not predicate():
        assert time.monotonic() - began < timeout, "condition not met in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - began


def test_server_options_apply_the_configured_limits() -> None:
    options = dict(server_options(7, 2.5, 0.5))
    assert options["grpc.max_concurrent_streams"] == 7
    assert options["grpc.keepalive_time_ms"] == 2500
    assert options["grpc.keepalive_timeout_ms"] == 500
    assert options["grpc.http2.ping_timeout_ms"] == 500
    assert options["grpc.max_receive_message_length"] == 16 * 1024 * 1024
    assert options["grpc.max_send_message_length"] == 16 * 1024 * 1024


def test_limit_options_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = parse_args([])
    assert (defaults.max_result_bytes, defaults.max_streams_per_connection) == (4 << 20, 20_000)
    assert (defaults.keepalive_time, defaults.keepalive_timeout) == (30.0, 10.0)
    monkeypatch.setenv("WORKFLOW_KEEPALIVE_TIME", "5")
    monkeypatch.setenv("WORKFLOW_MAX_RESULT_BYTES", "1000")
    config = parse_args(["--max-streams-per-connection", "8", "--keepalive-timeout", "2.5"])
    assert config == Config(
        max_result_bytes=1000,
        max_streams_per_connection=8,
        keepalive_time=5.0,
        keepalive_timeout=2.5,
    )
    for bad in (["--max-streams-per-connection", "0"], ["--keepalive-time", "-1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


async def test_calls_beyond_the_stream_cap_wait_for_a_free_stream() -> None:
    server, port = await serve("memory", max_streams_per_connection=2)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.WorkflowServiceStub(channel)
            runs = [
                (await stub.RunWorkflow(req("approval", question=f"q{i}"))).run for i in range(2)
            ]
            streams = [stub.StreamEvents(pb.StreamEventsRequest(run_id=r.run_id)) for r in runs]
            for s in streams:
                await s.read()  # both streams are open on the one connection
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetRun(pb.GetRunRequest(run_id=runs[0].run_id), timeout=0.5)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

            # Another connection is not limited by this one's streams.
            other_options = [("grpc.use_local_subchannel_pool", 1)]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=other_options) as c2:
                other = pb_grpc.WorkflowServiceStub(c2)
                await other.GetRun(pb.GetRunRequest(run_id=runs[0].run_id), timeout=5)

            waiting = asyncio.ensure_future(
                stub.GetRun(pb.GetRunRequest(run_id=runs[0].run_id), timeout=5)
            )
            await asyncio.sleep(0.2)
            assert not waiting.done()
            streams[0].cancel()  # frees a stream: the queued call goes through
            assert (await waiting).run.run_id == runs[0].run_id
            streams[1].cancel()
    finally:
        await server.stop(0)


async def test_keepalive_notices_a_vanished_client_on_an_idle_stream() -> None:
    server, port = await serve("memory", keepalive_time=0.5, keepalive_timeout=0.5)
    proxy = TcpProxy(port)
    await proxy.start()
    try:
        async with grpc.aio.insecure_channel(proxy.address) as channel:
            stub = pb_grpc.WorkflowServiceStub(channel)
            run = (await stub.RunWorkflow(req("approval", question="still there?"))).run
            stream = stub.StreamEvents(pb.StreamEventsRequest(run_id=run.run_id))
            while (await stream.read()).kind != pb.EVENT_KIND_INPUT_REQUIRED:
                pass
            store = server.manager.store
            await wait_until(lambda: live_followers(store, run.run_id) == 1, 2)

            proxy.black_hole()
            # One missed ping answer (keepalive time + timeout, 1 s) ends the connection.
            took = await wait_until(lambda: live_followers(store, run.run_id) == 0, 5)
            assert took < 4
            # The run is not affected: it still waits for its answer.
            assert server.manager.active[run.run_id].run.status == pb.RUN_STATUS_WAITING_FOR_INPUT
            stream.cancel()
    finally:
        await proxy.close()
        await server.stop(0)


async def test_a_burst_of_streams_on_one_connection_fits_the_default_cap() -> None:
    """grpc refuses (UNAVAILABLE) calls a client opens in a burst past the cap instead of
    queueing them, so the default must hold many subscribers on one connection."""
    server, port = await serve("memory")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.WorkflowServiceStub(channel)
            start = req("ticker", count=1, interval_ms=0)

            async def stream() -> int:
                events = [e async for e in stub.StreamEvents(pb.StreamEventsRequest(start=start))]
                return events[-1].kind

            kinds = await asyncio.gather(*(stream() for _ in range(1500)))
        assert kinds == [pb.EVENT_KIND_RUN_SUCCEEDED] * 1500
    finally:
        await server.stop(0)
