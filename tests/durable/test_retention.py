"""Retention: ended runs past the age or count limit are pruned, in both stores."""

import asyncio
from pathlib import Path

import grpc
import pytest

from examples import WORKFLOWS
from service import WorkflowServer
from service._pb import workflow_pb2 as pb
from service.config import duration, parse_args
from service.store import open_store

from ..service.conftest import Served, req


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory" if request.param == "memory" else f"sqlite:///{tmp_path}/runs.db"


async def serving(url: str, **options) -> Served:
    server = WorkflowServer(dict(WORKFLOWS), store=open_store(url), **options)
    port = await server.start("127.0.0.1", 0)
    return Served(server, port, grpc.aio.insecure_channel(f"127.0.0.1:{port}"))


async def exists(served: Served, run_id: str) -> bool:
    try:
        await served.stub.GetRun(pb.GetRunRequest(run_id=run_id))
    except grpc.aio.AioRpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
        return False
    return True


async def test_runs_older_than_the_retention_go(store_url: str) -> None:
    served = await serving(store_url, retention=0.3, prune_interval=0.05)
    try:
        await served.stub.RunWorkflow(req("echo", _wait=True, _run_id="old", message="x"))
        await served.start("ticker", _run_id="going", count=1000, interval_ms=20)
        assert await exists(served, "old")
        await asyncio.sleep(0.6)
        assert not await exists(served, "old")
        assert await exists(served, "going")  # a run still going is never pruned
    finally:
        await served.channel.close()
        await served.server.stop(0)


async def test_only_the_newest_ended_runs_are_kept(store_url: str) -> None:
    served = await serving(store_url, max_ended_runs=3, prune_interval=3600)
    try:
        for i in range(7):
            await served.stub.RunWorkflow(req("echo", _wait=True, _run_id=f"r{i}", message="x"))
        assert await served.server.manager.prune(batch=2) == 4  # several small batches
        kept = [r.run_id for r in (await served.stub.ListRuns(pb.ListRunsRequest())).runs]
        assert kept == ["r6", "r5", "r4"]
        assert [e.sequence for e in await served.events("r6")][:1] == [1]
    finally:
        await served.channel.close()
        await served.server.stop(0)


def test_retention_option_parsing() -> None:
    assert duration("7d") == 7 * 86400
    assert duration("90m") == 5400
    assert duration("none") is None
    config = parse_args(["--retention", "12h", "--max-ended-runs", "0"])
    assert config.retention == 12 * 3600
    assert config.max_ended_runs is None
    with pytest.raises(SystemExit):
        parse_args(["--retention", "soon"])
