"""Crashes and restarts of a real server process on a SQLite store."""

import asyncio
import itertools
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from workflow_client import Event, WorkflowClient

from service.checkpoints import CHECKPOINT_DELAY

from ..server_process import launch_server

TICKS = 30  # 1.5 s a run: all 100 are still going when the server is killed
Starter = Callable[[], Coroutine[Any, Any, asyncio.subprocess.Process]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def launch(
    port: int, store: str, *options: str, preexec_fn: Callable[[], None] | None = None
) -> tuple[asyncio.subprocess.Process, asyncio.Future[bytes]]:
    """The server on ``port`` and ``store``, once it listens; and the task that keeps
    reading its log so it never blocks on a full pipe."""
    proc, _ = await launch_server("--store", store, *options, port=port, preexec_fn=preexec_fn)
    assert proc.stderr is not None
    return proc, asyncio.ensure_future(proc.stderr.read())


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[Starter, str]]:
    """Starts the server on one port and one database, as often as a test asks."""
    port = free_port()
    procs: list[asyncio.subprocess.Process] = []
    drains: list[asyncio.Future[bytes]] = []

    async def start() -> asyncio.subprocess.Process:
        proc, drain = await launch(
            port,
            f"sqlite:///{tmp_path}/runs.db",
            "--workflows",
            "examples:WORKFLOWS,tests.durable.flows:FLOWS",
            "--shutdown-grace",
            "0.2",
        )
        drains.append(drain)
        procs.append(proc)
        return proc

    yield start, f"127.0.0.1:{port}"
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def assert_exactly_once(events: list[Event], ticks: int) -> None:
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].kind == "RUN_STARTED"
    assert events[-1].kind == "RUN_SUCCEEDED"
    assert [e.data["n"] for e in events if e.kind == "STREAM"] == list(range(1, ticks + 1))


async def test_kill_9_with_100_runs_in_flight_loses_nothing(
    server: tuple[Starter, str],
) -> None:
    start, address = server
    proc = await start()
    async with WorkflowClient(address, reconnect_attempts=50, reconnect_delay=0.1) as client:
        handles = [
            client.stream("ticker", count=TICKS, interval_ms=50, run_id=f"crash-{i}")
            for i in range(100)
        ]
        seen: dict[str, list[Event]] = {h.run_id: [] for h in handles}
        ticking: set[str] = set()
        all_ticking = asyncio.Event()

        async def follow(handle: Any) -> None:
            async for ev in handle.events():
                seen[handle.run_id].append(ev)
                if ev.kind == "STREAM":
                    ticking.add(handle.run_id)
                    if len(ticking) == len(handles):
                        all_ticking.set()

        followers = [asyncio.ensure_future(follow(h)) for h in handles]
        await asyncio.wait_for(all_ticking.wait(), 30)
        proc.kill()  # SIGKILL: no chance to flush or say goodbye
        await proc.wait()
        cut = {run_id: len(evs) for run_id, evs in seen.items() if not evs[-1].terminal}
        assert len(cut) >= 50  # on a loaded machine a few may have finished already
        await start()
        await asyncio.wait_for(asyncio.gather(*followers), 60)
        for run_id, events in seen.items():
            assert_exactly_once(events, TICKS)
            assert await client.handle(run_id).result() == TICKS
        assert all(len(seen[run_id]) > n for run_id, n in cut.items())


async def test_a_run_waiting_for_input_survives_kill_9(server: tuple[Starter, str]) -> None:
    start, address = server
    proc = await start()
    async with WorkflowClient(address, reconnect_attempts=50, reconnect_delay=0.1) as client:
        handle = await client.start("approval", question="Deploy?", run_id="waiting")
        async for ev in handle.events():
            if ev.kind == "INPUT_REQUIRED":
                break
        proc.kill()
        await proc.wait()
        await start()
        run = await handle.get()
        for _ in range(100):
            if run.status == "WAITING_FOR_INPUT":
                break
            await asyncio.sleep(0.02)
            run = await handle.get()
        assert run.status == "WAITING_FOR_INPUT"
        await handle.send_event("HumanResponseEvent", response="yes")
        assert await handle.result() == {"approved": True, "response": "yes"}
        events = [e async for e in handle.events()]
        assert [e.kind for e in events].count("INPUT_REQUIRED") == 1
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))


async def test_an_answer_acknowledged_before_a_crash_is_kept(
    server: tuple[Starter, str],
) -> None:
    start, address = server
    proc = await start()
    async with WorkflowClient(address, reconnect_attempts=50, reconnect_delay=0.1) as client:
        handle = await client.start("approval", question="Deploy?", run_id="answered")
        async for ev in handle.events():
            if ev.kind == "INPUT_REQUIRED":
                break
        await handle.send_event("HumanResponseEvent", response="no")
        proc.kill()
        await proc.wait()
        await start()
        assert await handle.result() == {"approved": False, "response": "no"}


async def relay_through_a_crash(
    server: tuple[Starter, str], first_seconds: float, pause: float
) -> list[Event]:
    """A relay run killed ``pause`` seconds into its second step; its events once it ended
    on the next server."""
    start, address = server
    proc = await start()
    async with WorkflowClient(address, reconnect_attempts=50, reconnect_delay=0.1) as client:
        handle = await client.start(
            "relay", first_seconds=first_seconds, second_seconds=3 * pause, run_id="relay"
        )
        async for ev in handle.events():
            if ev.kind == "STEP_STARTED" and ev.step == "second":
                break
        await asyncio.sleep(pause)
        proc.kill()
        await proc.wait()
        await start()
        assert await handle.result() == "arrived"
        events = [e async for e in handle.events()]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    return events


def started(events: list[Event], step: str) -> int:
    return sum(1 for e in events if e.kind == "STEP_STARTED" and e.step == step)


async def test_a_step_that_ran_the_checkpoint_delay_is_saved_at_once(
    server: tuple[Starter, str],
) -> None:
    # Killed long before the delay is up: only the step's own length got it saved.
    events = await relay_through_a_crash(server, CHECKPOINT_DELAY + 0.1, pause=0.2)
    assert started(events, "first") == 1
    assert started(events, "second") == 2  # in flight at the crash: it runs again


async def test_quick_steps_are_saved_within_the_checkpoint_delay(
    server: tuple[Starter, str],
) -> None:
    events = await relay_through_a_crash(server, 0, pause=CHECKPOINT_DELAY + 0.3)
    assert started(events, "first") == 1
    assert started(events, "second") == 2


async def test_sigterm_leaves_durable_runs_to_the_next_start(
    server: tuple[Starter, str],
) -> None:
    start, address = server
    proc = await start()
    async with WorkflowClient(address, reconnect_attempts=50, reconnect_delay=0.1) as client:
        handle = client.stream("ticker", count=10, interval_ms=80, run_id="graceful")
        events: list[Event] = []
        ticking = asyncio.Event()

        async def follow() -> None:
            async for ev in handle.events():
                events.append(ev)
                if ev.kind == "STREAM":
                    ticking.set()

        follower = asyncio.ensure_future(follow())
        await asyncio.wait_for(ticking.wait(), 30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        before = len(events)
        await start()
        await asyncio.wait_for(follower, 30)
        assert len(events) > before
        assert_exactly_once(events, 10)


async def test_a_run_that_is_not_durable_fails_saying_the_server_restarted(
    server: tuple[Starter, str],
) -> None:
    start, address = server
    proc = await start()
    async with WorkflowClient(address, reconnect_attempts=50, reconnect_delay=0.1) as client:
        handle = await client.start("forgetful", seconds=30, run_id="forgetful")
        proc.kill()
        await proc.wait()
        await start()
        run = await handle.get()
        assert run.status == "FAILED"
        assert run.error is not None
        assert run.error.type == "ServerRestartedError"
        assert "restarted" in run.error.message


async def test_runs_queued_behind_a_concurrency_key_survive_kill_9(
    server: tuple[Starter, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs waiting for a slot of their key keep their place, and an event acknowledged
    while one of them waited is delivered when it starts."""
    monkeypatch.setenv("WORKFLOW_MAX_RUNS_PER_KEY", "1")
    start, address = server
    proc = await start()
    key = {"concurrency_key": "tenant-1"}
    async with WorkflowClient(address, reconnect_attempts=50, reconnect_delay=0.1) as client:
        first = await client.start("ticker", count=40, interval_ms=50, labels=key, run_id="q0")
        waiting = [
            await client.start("ticker", count=3, interval_ms=10, labels=key, run_id=f"q{i}")
            for i in (1, 2)
        ]
        asked = await client.start("approval", question="Ship?", labels=key, run_id="q3")
        assert (await asked.get()).status == "PENDING"
        await asked.send_event("HumanResponseEvent", response="yes")  # kept while it waits
        async for ev in first.events():
            if ev.kind == "STREAM":
                break  # the first run is going; the others still wait
        proc.kill()
        await proc.wait()
        await start()
        assert [(await h.get()).status for h in (*waiting, asked)] == ["PENDING"] * 3
        assert await first.result() == 40
        assert [await h.result() for h in waiting] == [3, 3]
        assert await asked.result() == {"approved": True, "response": "yes"}
        runs = [await h.get() for h in (first, *waiting, asked)]
        for before, after in itertools.pairwise(runs):
            assert before.ended_at is not None and after.started_at is not None
            assert after.started_at >= before.ended_at  # one at a time, in arrival order
