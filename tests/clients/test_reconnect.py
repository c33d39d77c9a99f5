"""events() survives dropped connections: it reconnects by itself and resumes after the last
event it yielded, with no gap and no duplicate. Connections run through a real TCP proxy
whose open connections the test aborts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from workflow_client import Event, RunHandle, UnavailableError, WorkflowClient

from examples import WORKFLOWS
from service.server import WorkflowServer
from service.store import open_store

from ..service.conftest import serve
from .helpers import TcpProxy


def check_contiguous(events: list[Event]) -> None:
    sequences = [e.sequence for e in events]
    assert sequences == list(range(1, len(events) + 1)), sequences
    assert events[0].kind == "RUN_STARTED"
    assert events[-1].kind == "RUN_SUCCEEDED"


@pytest.mark.parametrize("how", ["start", "stream"])
async def test_events_resume_after_dropped_connections(
    client: WorkflowClient, proxy: TcpProxy, how: str
) -> None:
    count = 30
    drop_at = {5, 15, 25}  # after this many events (of 34), cut every connection
    async with WorkflowClient(proxy.address, reconnect_delay=0.05) as via_proxy:
        if how == "start":
            handle: RunHandle = await via_proxy.start("ticker", count=count, interval_ms=20)
        else:
            handle = via_proxy.stream("ticker", count=count, interval_ms=20)
        events: list[Event] = []
        cuts = 0
        async for event in handle.events():
            events.append(event)
            if len(events) in drop_at:
                cuts += proxy.drop() > 0
        assert await handle.result() == count

    check_contiguous(events)
    assert sum(e.kind == "STREAM" for e in events) == count
    assert cuts == len(drop_at)
    assert proxy.accepted >= 1 + len(drop_at)  # it really reconnected after each cut
    # The same run, read directly, has exactly the events collected through the proxy.
    direct = [e async for e in client.handle(handle.run_id).events()]
    assert direct == events


async def test_run_survives_a_dropped_connection(client: WorkflowClient, proxy: TcpProxy) -> None:
    async with WorkflowClient(proxy.address, reconnect_delay=0.05) as via_proxy:
        await via_proxy.run("echo", message="connect")
        call = via_proxy.run("ticker", run_id="survivor", count=10, interval_ms=20)
        task = asyncio.ensure_future(call)
        await asyncio.sleep(0.05)
        assert proxy.drop() > 0
        assert await task == 10
    # The retry found the run by its id instead of starting a second one.
    runs = [r async for r in client.list_runs(workflow="ticker")]
    assert [r.run_id for r in runs] == ["survivor"]


async def test_events_give_up_with_unavailable_when_server_is_gone(proxy: TcpProxy) -> None:
    async with WorkflowClient(
        proxy.address, reconnect_attempts=3, reconnect_delay=0.05
    ) as via_proxy:
        handle = await via_proxy.start("ticker", count=1000, interval_ms=10)
        events: list[Event] = []
        began = 0.0
        with pytest.raises(UnavailableError):
            async for event in handle.events():
                events.append(event)
                if len(events) == 5:
                    began = time.perf_counter()
                    await proxy.close()  # stop listening and cut everything: gone for good
        gave_up_after = time.perf_counter() - began
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert len(events) >= 5
    assert gave_up_after < 2.0


async def test_calls_to_no_server_raise_unavailable() -> None:
    async with WorkflowClient("127.0.0.1:1", reconnect_attempts=2, reconnect_delay=0.01) as nowhere:
        with pytest.raises(UnavailableError):
            await nowhere.run("echo", message="hi")
        with pytest.raises(UnavailableError):
            await nowhere.list_workflows()
        with pytest.raises(UnavailableError):
            [e async for e in nowhere.stream("echo", message="hi").events()]


async def test_events_wait_as_long_as_a_restarting_server_asks(tmp_path: Path) -> None:
    """A server stopping with a durable run in flight ends its streams UNAVAILABLE with a
    RetryInfo (1 s). The client waits that long before reconnecting, although its own
    back-off would have spent all its attempts in a few milliseconds, and so finds the
    restarted server and resumes the run's events with no gap."""
    url = f"sqlite:///{tmp_path}/runs.db"
    first, port = await serve(url)
    async with WorkflowClient(
        f"127.0.0.1:{port}", reconnect_attempts=2, reconnect_delay=0.01
    ) as client:
        handle = await client.start("ticker", count=20, interval_ms=50)
        events: list[Event] = []
        servers: list[WorkflowServer] = []

        async def restart() -> float:
            await first.stop(0)  # the run is left to resume at the next start
            stopped = time.perf_counter()
            await asyncio.sleep(0.3)  # the client sees the stream end meanwhile
            servers.append(WorkflowServer(WORKFLOWS, store=open_store(url)))
            await servers[0].start("127.0.0.1", port)
            return time.perf_counter() - stopped

        restarting: asyncio.Task[float] | None = None
        try:
            async for event in handle.events():
                events.append(event)
                if len(events) == 4:
                    restarting = asyncio.create_task(restart())
            assert restarting is not None
            assert await restarting < 1.0  # back before the client's first retry
            assert await handle.result() == 20
        finally:
            for server in servers:
                await server.stop(0)
    check_contiguous(events)
    assert [e.data["n"] for e in events if e.kind == "STREAM"] == list(range(1, 21))
