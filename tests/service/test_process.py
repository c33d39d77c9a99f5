"""The server as its users start it: a subprocess, stopped with SIGTERM while streaming."""

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from service._pb import workflow_pb2 as pb
from service._pb import workflow_pb2_grpc as pb_grpc

from ..server_process import launch_server
from .conftest import details, req

TERMINAL = {
    pb.EVENT_KIND_RUN_SUCCEEDED,
    pb.EVENT_KIND_RUN_FAILED,
    pb.EVENT_KIND_RUN_CANCELLED,
    pb.EVENT_KIND_RUN_TIMED_OUT,
}


@pytest.fixture(params=["memory", "sqlite"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def server_process(
    store_kind: str, tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    store = "memory" if store_kind == "memory" else f"sqlite:///{tmp_path}/runs.db"
    proc, port = await launch_server("--store", store, "--shutdown-grace", "1")
    yield proc, port
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_sigterm_lets_short_runs_finish_and_stops_long_ones(
    server_process: tuple[asyncio.subprocess.Process, int], store_kind: str
) -> None:
    """Runs that end within the grace period end normally. The rest are cancelled when
    the store forgets them (memory); with a durable store they are left to resume at the
    next start, and their streams end with UNAVAILABLE saying where to resume."""
    proc, port = server_process
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)

        opened: list[asyncio.Future[None]] = []

        async def stream(run_id: str, count: int) -> list[pb.WorkflowEvent]:
            start = req("ticker", count=count, interval_ms=50, _run_id=run_id)
            call = stub.StreamEvents(pb.StreamEventsRequest(start=start))
            first = opened[int(run_id.split("-")[1]) + (0 if run_id.startswith("short") else 5)]
            got: list[pb.WorkflowEvent] = []
            try:
                async for e in call:
                    got.append(e)
                    if not first.done():
                        first.set_result(None)
            except grpc.aio.AioRpcError as e:
                assert store_kind == "sqlite"
                assert e.code() == grpc.StatusCode.UNAVAILABLE
                assert f"after_sequence={got[-1].sequence}" in (e.details() or "")
                why = details(e)
                assert why.reason == "SHUTTING_DOWN"
                assert why.metadata["after_sequence"] == str(got[-1].sequence)
            return got

        opened += [asyncio.get_running_loop().create_future() for _ in range(25)]
        short = [asyncio.ensure_future(stream(f"short-{i}", 4)) for i in range(5)]
        long = [asyncio.ensure_future(stream(f"long-{i}", 10_000)) for i in range(20)]
        await asyncio.wait_for(asyncio.gather(*opened), 20)  # every stream is open and ticking
        proc.send_signal(signal.SIGTERM)
        for events in await asyncio.gather(*short):
            assert events[-1].kind == pb.EVENT_KIND_RUN_SUCCEEDED
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        for events in await asyncio.gather(*long):
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
            if store_kind == "memory":
                assert events[-1].kind == pb.EVENT_KIND_RUN_CANCELLED
            else:
                assert events[-1].kind not in TERMINAL
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert proc.stderr is not None
    log = await proc.stderr.read()
    assert b"event=stopped" in log
    assert log.count(b"event=run_ended") == (25 if store_kind == "memory" else 5)


async def test_bad_workflows_option_exits_with_a_clear_message() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "--workflows",
        "no_such_module:THING",
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode != 0
    assert b"no_such_module" in err
