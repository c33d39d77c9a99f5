"""The SQLite store: history and idempotency across restarts, and broken files."""

import asyncio
import json
import queue
import sqlite3
import sys
from pathlib import Path

import grpc
import pytest

from service._pb import workflow_pb2 as pb
from service.store import StoreError, open_store

from ..service.conftest import Served, req, serve


async def restartable(url: str):
    server, port = await serve(url)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Served(server, port, channel)


async def shut(served: Served) -> None:
    await served.channel.close()
    await served.server.stop(0)


async def test_ended_runs_and_their_history_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    first = await restartable(url)
    done = await first.stub.RunWorkflow(req("ticker", _wait=True, _run_id="kept", count=3))
    history = await first.events("kept")
    await shut(first)

    second = await restartable(url)
    try:
        run = (await second.stub.GetRun(pb.GetRunRequest(run_id="kept"))).run
        assert run.status == pb.RUN_STATUS_SUCCEEDED
        assert run.result.number_value == 3
        assert run.last_sequence == done.run.last_sequence == len(history)
        replayed = await second.events("kept")
        assert [e.SerializeToString() for e in replayed] == [e.SerializeToString() for e in history]
        assert await second.events("kept", after=len(history) - 2) == history[-2:]
        again = await second.stub.RunWorkflow(req("ticker", _run_id="kept", count=3))
        assert again.run.status == pb.RUN_STATUS_SUCCEEDED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await second.stub.RunWorkflow(req("ticker", _run_id="kept", count=4))
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
        listed = await second.stub.ListRuns(pb.ListRunsRequest(workflow="ticker"))
        assert [r.run_id for r in listed.runs] == ["kept"]
        # New runs go on numbering after the old ones, so paging stays newest first.
        await second.stub.RunWorkflow(req("ticker", _wait=True, _run_id="newer", count=1))
        listed = await second.stub.ListRuns(pb.ListRunsRequest(workflow="ticker", page_size=1))
        assert [r.run_id for r in listed.runs] == ["newer"]
    finally:
        await shut(second)


async def test_a_waited_run_is_answered_once_its_record_is_committed(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    served = await restartable(f"sqlite:///{db}")
    try:
        done = await asyncio.gather(
            *(served.stub.RunWorkflow(req("echo", _wait=True, message=f"m{i}")) for i in range(20))
        )
        # Read by another connection the moment the answers are in: every run is there,
        # ended, with its last event.
        with sqlite3.connect(db) as other:
            for d in done:
                status, seq = other.execute(
                    "SELECT status, (SELECT MAX(seq) FROM events AS e WHERE e.ordinal = r.ordinal)"
                    " FROM runs AS r WHERE run_id = ?",
                    (d.run.run_id,),
                ).fetchone()
                assert (status, seq) == (pb.RUN_STATUS_SUCCEEDED, d.run.last_sequence)
    finally:
        await shut(served)


async def test_after_commit_calls_back_once_earlier_writes_are_readable(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    store = open_store(f"sqlite:///{db}")
    seen: list[tuple[int, ...] | None] = []
    done = asyncio.Event()

    def read() -> None:
        with sqlite3.connect(db) as other:
            seen.append(other.execute("SELECT status FROM runs WHERE run_id = 'r'").fetchone())
        done.set()

    try:
        run = pb.Run(run_id="r", workflow="echo", status=pb.RUN_STATUS_RUNNING)
        assert await store.insert_run(run, "fingerprint") is None
        run.status = pb.RUN_STATUS_SUCCEEDED
        store.update_run(run)
        store.after_commit(read)
        assert seen == []  # never from within the call
        await asyncio.wait_for(done.wait(), 5)
        assert seen == [(pb.RUN_STATUS_SUCCEEDED,)]
    finally:
        await store.close()
    called: list[int] = []
    store.after_commit(lambda: called.append(1))  # closed: on the next loop turn all the same
    assert called == []
    await asyncio.sleep(0)
    assert called == [1]


async def test_a_long_history_replays_in_pages(tmp_path: Path) -> None:
    served = await restartable(f"sqlite:///{tmp_path}/runs.db")
    try:
        done = await served.stub.RunWorkflow(req("ticker", _wait=True, count=1200, interval_ms=0))
        events = await served.events(done.run.run_id)
        assert [e.sequence for e in events] == list(range(1, done.run.last_sequence + 1))
        assert len(events) > 1000  # several pages of 256
    finally:
        await shut(served)


async def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as info:
        open_store(f"sqlite:///{path}")
    assert "not a readable SQLite database" in str(info.value)
    assert str(path) in str(info.value)


def _refusal(path: Path, script: str) -> str:
    """Why opening a file that ``script`` made fails."""
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.close()
    with pytest.raises(StoreError) as info:
        open_store(f"sqlite:///{path}")
    return str(info.value)


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    assert "newer version" in _refusal(tmp_path / "runs.db", "PRAGMA user_version = 99;")


async def test_bad_store_option_is_a_clear_error() -> None:
    with pytest.raises(StoreError):
        open_store("postgres://nowhere")


async def test_server_refuses_to_start_on_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"garbage" * 1000)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "--port",
        "0",
        "--store",
        f"sqlite:///{path}",
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode != 0
    assert b"not a readable SQLite database" in err


async def test_a_slow_follower_of_a_long_live_run_misses_nothing(tmp_path: Path) -> None:
    """The store keeps only a tail of a live run in memory; a follower that falls behind it
    reads the rest back from the database."""
    served = await restartable(f"sqlite:///{tmp_path}/runs.db")
    try:
        run = await served.start("ticker", count=4000, interval_ms=1)
        seen = []
        async for event in served.stub.StreamEvents(pb.StreamEventsRequest(run_id=run.run_id)):
            seen.append(event.sequence)
            if len(seen) % 500 == 0:
                await asyncio.sleep(0.5)  # fall behind while the run goes on
        assert seen == list(range(1, len(seen) + 1))
        assert len(seen) > 4000
    finally:
        await shut(served)


@pytest.mark.parametrize("update_from", [True, False], ids=["update-from", "row-by-row"])
async def test_batches_split_across_statements_keep_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, update_from: bool
) -> None:
    """Rows are written several to a statement (or one UPDATE per row on a SQLite without
    UPDATE ... FROM); whatever the split, every run, update and event lands."""
    from service.store import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "_ROWS_PER_STATEMENT", 3)
    monkeypatch.setattr(sqlite_store, "_UPDATE_FROM", update_from)
    url = f"sqlite:///{tmp_path}/runs.db"
    first = await restartable(url)
    ids = [f"r{i}" for i in range(20)]
    try:
        done = await asyncio.gather(
            *(first.stub.RunWorkflow(req("ticker", _wait=True, _run_id=i, count=5)) for i in ids)
        )
        assert {d.run.status for d in done} == {pb.RUN_STATUS_SUCCEEDED}
    finally:
        await shut(first)
    second = await restartable(url)
    try:
        for run_id, d in zip(ids, done, strict=True):
            run = (await second.stub.GetRun(pb.GetRunRequest(run_id=run_id))).run
            assert run.status == pb.RUN_STATUS_SUCCEEDED
            assert run.result.number_value == 5
            events = await second.events(run_id)
            assert [e.sequence for e in events] == list(range(1, d.run.last_sequence + 1))
            assert [e.data["n"] for e in events if e.kind == pb.EVENT_KIND_STREAM] == [
                1,
                2,
                3,
                4,
                5,
            ]
    finally:
        await shut(second)


async def test_an_open_store_shortens_the_switch_interval_until_closed(tmp_path: Path) -> None:
    """The writer thread gets the GIL back within 1 ms rather than 5 ms while a store is
    open; the interpreter's setting is restored when the last store closes."""
    before = sys.getswitchinterval()
    first = open_store(f"sqlite:///{tmp_path}/a.db")
    second = open_store(f"sqlite:///{tmp_path}/b.db")
    assert sys.getswitchinterval() == pytest.approx(min(before, 0.001))
    await first.close()
    await first.close()  # closing twice releases once
    assert sys.getswitchinterval() == pytest.approx(min(before, 0.001))
    await second.close()
    assert sys.getswitchinterval() == pytest.approx(before)


# The schema of version 1, which keyed rows by run id: databases written by older servers.
_V1_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, ordinal INTEGER NOT NULL UNIQUE, workflow TEXT NOT NULL,
    status INTEGER NOT NULL, fingerprint TEXT NOT NULL, created_ns INTEGER NOT NULL,
    ended_ns INTEGER, labels TEXT NOT NULL, run BLOB NOT NULL, checkpoint TEXT
);
CREATE INDEX runs_by_status ON runs (status, ordinal);
CREATE INDEX runs_by_workflow ON runs (workflow, ordinal);
CREATE INDEX runs_by_end ON runs (ended_ns) WHERE ended_ns IS NOT NULL;
CREATE TABLE events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, invocation INTEGER NOT NULL,
    idx INTEGER NOT NULL, event BLOB NOT NULL, PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


def _v1_database(path: Path) -> list[pb.WorkflowEvent]:
    """A version-1 file with an ended ticker run ("old-ended", two events) and an echo run
    that was going when its server stopped ("old-going", one event); returns the events."""
    conn = sqlite3.connect(path)
    conn.executescript(_V1_SCHEMA)
    events = []
    rows = [
        ("old-ended", 1, "ticker", pb.RUN_STATUS_SUCCEEDED, {"count": 1.0}, 2),
        ("old-going", 2, "echo", pb.RUN_STATUS_RUNNING, {"message": "hi"}, 1),
    ]
    for run_id, ordinal, workflow, status, data, last in rows:
        run = pb.Run(run_id=run_id, workflow=workflow, status=status, last_sequence=last)
        run.input.update(data)
        fingerprint = workflow + "\n" + json.dumps(data, sort_keys=True, separators=(",", ":"))
        ended = 1 if status == pb.RUN_STATUS_SUCCEEDED else None
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, 1, ?, '{}', ?, NULL)",
            (run_id, ordinal, workflow, status, fingerprint, ended, run.SerializeToString()),
        )
        for seq in range(1, last + 1):
            kind = pb.EVENT_KIND_RUN_STARTED if seq == 1 else pb.EVENT_KIND_RUN_SUCCEEDED
            event = pb.WorkflowEvent(run_id=run_id, sequence=seq, kind=kind, type=f"T{seq}")
            conn.execute(
                "INSERT INTO events VALUES (?, ?, 0, 0, ?)",
                (run_id, seq, event.SerializeToString()),
            )
            events.append(event)
    conn.commit()
    conn.close()
    return events


async def test_a_version_1_database_is_migrated_and_its_runs_go_on(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    old = _v1_database(path)
    served = await restartable(f"sqlite:///{path}")
    try:
        ended = [e for e in old if e.run_id == "old-ended"]
        assert await served.events("old-ended") == ended
        # Its fingerprint is of the earlier kind (canonical JSON): still recognised.
        same = await served.stub.RunWorkflow(req("ticker", _run_id="old-ended", count=1))
        assert same.run.status == pb.RUN_STATUS_SUCCEEDED
        for other in (
            req("ticker", _run_id="old-ended", count=2),
            req("echo", _run_id="old-ended", count=1),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await served.stub.RunWorkflow(other)
            assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        # The going run was resumed: it starts again and its log goes on from sequence 2.
        going = await served.events("old-going")
        assert going[0] == next(e for e in old if e.run_id == "old-going")
        assert [e.sequence for e in going] == list(range(1, len(going) + 1))
        assert going[-1].kind == pb.EVENT_KIND_RUN_SUCCEEDED
        run = (await served.stub.GetRun(pb.GetRunRequest(run_id="old-going"))).run
        assert run.result.string_value == "hi"
        # New runs come after the migrated ones.
        await served.stub.RunWorkflow(req("echo", _wait=True, _run_id="new", message="x"))
        listed = await served.stub.ListRuns(pb.ListRunsRequest())
        assert [r.run_id for r in listed.runs] == ["new", "old-going", "old-ended"]
    finally:
        await shut(served)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_a_migration_that_fails_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    why = _refusal(path, "CREATE TABLE runs (run_id TEXT); PRAGMA user_version = 1;")
    assert "cannot upgrade the run store" in why and "from schema 1 to 2" in why
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"runs"}
    conn.close()


@pytest.mark.parametrize(
    ("busy", "arriving", "sleeps"),
    [
        (False, [], 1),  # a lone caller waits one LINGER
        (False, [50, 50], 1),  # whatever its own run adds meanwhile
        (True, [], 1),  # after a busy batch, nothing more came
        (True, [5, 1, 0], 3),  # work kept coming for two intervals, then stopped
        (True, [1] * 20, 5),  # kept coming throughout: at most MAX_LINGER, 5 ms
    ],
)
def test_a_batch_waits_longer_only_while_work_keeps_coming(
    busy: bool, arriving: list[int], sleeps: int
) -> None:
    from service.store import sqlite as sqlite_store

    work: queue.SimpleQueue[object] = queue.SimpleQueue()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        for _ in range(arriving[len(slept) - 1] if len(slept) <= len(arriving) else 0):
            work.put(("event",))

    sqlite_store.gather(work, busy, sleep)
    assert slept == [sqlite_store.LINGER] * sleeps
