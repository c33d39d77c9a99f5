"""The server as its users start it: a subprocess, stopped with SIGTERM while streaming."""

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from service._pb import workflow_pb2 as pb
from service._pb import workflow_pb2_grpc as pb_grpc

from .conftest import req

LISTENING = re.compile(rb"event=listening address=[\d.]+:(\d+)")


@pytest.fixture
async def server_process(
    tmp_path: Path,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "--port",
        "0",
        "--store",
        f"sqlite:///{tmp_path}/runs.db",
        "--shutdown-grace",
        "1",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "WORKFLOW_LOG_LEVEL": "INFO"},
    )
    assert proc.stderr is not None
    port = 0
    while not port:
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        assert line, "server exited before listening"
        if m := LISTENING.search(line):
            port = int(m.group(1))
    yield proc, port
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_sigterm_lets_short_runs_finish_and_ends_long_ones_cancelled(
    server_process: tuple[asyncio.subprocess.Process, int],
) -> None:
    proc, port = server_process
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)

        async def stream(run_id: str, count: int) -> list[pb.WorkflowEvent]:
            start = req("ticker", count=count, interval_ms=50, _run_id=run_id)
            call = stub.StreamEvents(pb.StreamEventsRequest(start=start))
            return [e async for e in call]

        short = [asyncio.ensure_future(stream(f"short-{i}", 4)) for i in range(5)]
        long = [asyncio.ensure_future(stream(f"long-{i}", 10_000)) for i in range(20)]
        await asyncio.sleep(0.1)  # every stream is open and ticking
        proc.send_signal(signal.SIGTERM)
        for events in await asyncio.gather(*short):
            assert events[-1].kind == pb.EVENT_KIND_RUN_SUCCEEDED
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        for events in await asyncio.gather(*long):
            assert events[-1].kind == pb.EVENT_KIND_RUN_CANCELLED
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert proc.stderr is not None
    log = await proc.stderr.read()
    assert b"event=stopped" in log
    assert log.count(b"event=run_ended") == 25


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
