"""Structured log lines, as a server subprocess writes them with --log-format json."""

import asyncio
import json
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from service._pb import workflow_pb2 as pb
from service._pb import workflow_pb2_grpc as pb_grpc
from service.logs import caller_trace_id

from ..server_process import launch_server
from .conftest import req


@pytest.fixture
async def json_server(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    proc, port = await launch_server(
        "--store", f"sqlite:///{tmp_path}/runs.db", "--log-format", "json"
    )
    yield proc, port
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_json_lines_carry_run_step_and_callers_trace(
    json_server: tuple[asyncio.subprocess.Process, int],
) -> None:
    proc, port = json_server
    trace_id = f"{secrets.randbits(128) | 1:032x}"
    metadata = (("traceparent", f"00-{trace_id}-{secrets.randbits(64) | 1:016x}-01"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        resp = await stub.RunWorkflow(req("flaky", failures=2, _wait=True), metadata=metadata)
        assert resp.run.status == pb.RUN_STATUS_SUCCEEDED
    run_id = resp.run.run_id

    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    out = await asyncio.wait_for(proc.stderr.read(), 20)
    assert await proc.wait() == 0
    lines: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
    for line in lines:
        assert {"time", "level", "logger"} <= line.keys()
    mine = [line for line in lines if line.get("run_id") == run_id]
    assert [line["event"] for line in mine] == [
        "run_started",
        "step_failed",
        "step_retrying",
        "step_failed",
        "step_retrying",
        "run_ended",
    ]
    for line in mine:
        assert line["workflow"] == "flaky"
        assert line["trace_id"] == trace_id
    for line in mine[1:-1]:
        assert line["step"] == "attempt"
        assert line["invocation"] == mine[1]["invocation"]
    assert [line["attempt"] for line in mine[1:-1]] == [1, 2, 2, 3]
    assert [line["level"] for line in mine[1:-1]] == ["WARNING", "INFO", "WARNING", "INFO"]
    assert "FlakyError" in mine[1]["error"]
    assert mine[-1]["status"] == "SUCCEEDED"
    assert isinstance(mine[-1]["duration_ms"], float)
    assert "error" not in mine[-1]
    assert lines[-1]["event"] == "stopped"


@pytest.mark.parametrize(
    "header",
    [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    ],
)
def test_trace_id_is_read_from_a_valid_traceparent(header: str) -> None:
    md = (("user-agent", "x"), ("traceparent", header))
    assert caller_trace_id(md) == "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    "header",
    [
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all zero: invalid
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        "00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",  # not hex
        "00-0af7651916cd43dd-b7ad6b7169203331-01",  # too short
        "garbage",
    ],
)
def test_invalid_traceparent_gives_no_trace_id(header: str) -> None:
    assert caller_trace_id((("traceparent", header),)) is None


def test_no_metadata_gives_no_trace_id() -> None:
    assert caller_trace_id(None) is None
    assert caller_trace_id((("user-agent", "x"),)) is None
