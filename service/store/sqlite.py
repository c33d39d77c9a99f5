"""The SQLite store: runs and event logs in one embedded database file.

Writes never block the event loop: they go to one writer thread that commits them in
batches (everything queued, up to ``MAX_BATCH`` operations, after waiting ``LINGER`` for
company, and up to ``MAX_LINGER`` while more keeps coming), in WAL mode. An event becomes
visible to subscribers only once its batch has committed, so whatever a client has seen
survives a crash of the process. Reads of history run on a reader thread with its own
connection, a page at a time, so a slow subscriber never holds more than one page in
memory.

Durability: ``synchronous=NORMAL`` in WAL mode survives the process being killed (kill -9)
at any point; a power cut may lose the last batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import queue
import re
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .. import logs
from .._pb import workflow_pb2 as pb
from ..wire import LoggedEvent, read_header
from .base import RunLog, RunQuery, Store, StoredRun, Unfinished

log = logging.getLogger("service.store")

T = TypeVar("T")
# What waits for a batch to commit: a callback (after_commit; sync waits through one).
Barrier = Callable[[], None]

SCHEMA_VERSION = 2
MAX_BATCH = 5000
LINGER = 0.001  # seconds a small batch waits for more work before it commits
MAX_LINGER = 0.005  # the longest a batch waits while work keeps coming
SWITCH_INTERVAL = 0.001  # the interpreter's, while a store is open (see SqliteStore)
PAGE = 256  # events read from the database per page when replaying history
TAIL = 1024  # committed events of a live run kept in memory for followers keeping up

_ENDED = (
    pb.RUN_STATUS_SUCCEEDED,
    pb.RUN_STATUS_FAILED,
    pb.RUN_STATUS_CANCELLED,
    pb.RUN_STATUS_TIMED_OUT,
)

# Rows are keyed by the run's ordinal (its arrival order), not by its id: a batch's inserts
# then land at the end of each B-tree, whatever ids clients choose, so a commit writes a few
# pages rather than one per run.
_RUNS_TABLE = """
CREATE TABLE runs (
    ordinal     INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL UNIQUE,
    workflow    TEXT NOT NULL,
    status      INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    created_ns  INTEGER NOT NULL,
    ended_ns    INTEGER,
    labels      TEXT NOT NULL,
    run         BLOB NOT NULL,
    checkpoint  TEXT
);
"""
_EVENTS_TABLE = """
CREATE TABLE events (
    ordinal    INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    invocation INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    event      BLOB NOT NULL,
    PRIMARY KEY (ordinal, seq)
) WITHOUT ROWID;
"""
_INDEXES = """
CREATE INDEX runs_by_status ON runs (status, ordinal);
CREATE INDEX runs_by_workflow ON runs (workflow, ordinal);
CREATE INDEX runs_by_end ON runs (ended_ns) WHERE ended_ns IS NOT NULL;
"""


class StoreError(Exception):
    """The database cannot be used; the message says what is wrong and what to do."""


class StoreUnavailableError(StoreError):
    """The store failed while running (disk full, I/O error); no more writes are taken."""


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StoreError(f"--store {url!r}: expected sqlite:///path/to/runs.db")
    return Path(url[len(prefix) :])


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating or migrating as needed) and check the database, or explain why not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as e:
        raise StoreError(f"cannot open the run store {path}: {e}") from e
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the run store {path} was written by a newer version of this server "
                f"(schema {version}, this server knows {SCHEMA_VERSION}); upgrade the server "
                "or point --store at another file"
            )
        if version < SCHEMA_VERSION:
            try:
                _migrate(conn, version)
            except sqlite3.Error as e:
                # The migration is one transaction: closing the connection rolls it back.
                raise StoreError(
                    f"cannot upgrade the run store {path} from schema {version} to "
                    f"{SCHEMA_VERSION} ({e}); the file is unchanged. Fix the cause (free disk "
                    "space, say) and start again, or point --store at another file"
                ) from e
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StoreError(
                f"the run store {path} is damaged ({check}); restore it from a backup or "
                "move it aside to start with an empty store"
            )
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StoreError(
            f"the run store {path} is not a readable SQLite database ({e}); restore it from "
            "a backup or move it aside to start with an empty store"
        ) from e
    except StoreError:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring the schema from ``version`` to SCHEMA_VERSION, each step in one transaction."""
    if version == 0:
        conn.executescript(
            f"BEGIN; {_RUNS_TABLE} {_EVENTS_TABLE} {_INDEXES} "
            f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        )
        return
    if version == 1:
        # Version 1 keyed runs and events by run id; rebuild both tables keyed by ordinal.
        conn.executescript(
            "BEGIN; "
            + _RUNS_TABLE.replace("TABLE runs", "TABLE runs_v2")
            + "INSERT INTO runs_v2 SELECT ordinal, run_id, workflow, status, fingerprint, "
            "created_ns, ended_ns, labels, run, checkpoint FROM runs; "
            + _EVENTS_TABLE.replace("TABLE events", "TABLE events_v2")
            + "INSERT INTO events_v2 SELECT r.ordinal, e.seq, e.invocation, e.idx, e.event "
            "FROM events AS e JOIN runs AS r USING (run_id); "
            "DROP TABLE events; DROP TABLE runs; "
            "ALTER TABLE runs_v2 RENAME TO runs; ALTER TABLE events_v2 RENAME TO events; "
            + _INDEXES
            + "PRAGMA user_version = 2; COMMIT;"
        )
    # Later versions add a step here: `if version <= 2: ... PRAGMA user_version = 3`.


_open_stores = 0
_switch_interval_before = 0.0


def _shorten_switch_interval(change: int) -> None:
    """Counts open stores: the first lowers the switch interval, the last puts it back."""
    global _open_stores, _switch_interval_before
    _open_stores += change
    if change > 0 and _open_stores == 1:
        _switch_interval_before = sys.getswitchinterval()
        sys.setswitchinterval(min(_switch_interval_before, SWITCH_INTERVAL))
    elif change < 0 and _open_stores == 0:
        sys.setswitchinterval(_switch_interval_before)


def _labels_json(labels: Mapping[str, str]) -> str:
    # Most runs carry no labels: their JSON is a constant, not a call of the encoder.
    return json.dumps(dict(labels), sort_keys=True) if labels else "{}"


def _page_reader(run_id: str, after: int) -> Callable[[sqlite3.Connection], list[Any]]:
    def read(c: sqlite3.Connection) -> list[Any]:
        return c.execute(
            "SELECT event FROM events WHERE ordinal = (SELECT ordinal FROM runs WHERE run_id = ?) "
            "AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after, PAGE),
        ).fetchall()

    return read


class _Log(RunLog):
    """A live run's log: only its ``committed`` events are visible, and only a bounded tail
    of them stays in memory."""

    __slots__ = ("base", "committed", "ordinal")

    def __init__(self, ordinal: int, base: int) -> None:
        super().__init__()
        self.ordinal = ordinal  # the run's, which keys its rows
        self.base = base  # sequence number just before events[0]
        self.committed = 0  # how many of events are durable


class SqliteStore(Store):
    durable = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write_conn = open_database(path)
        self._read_conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="store-read")
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._live: dict[str, StoredRun] = {}
        self._logs: dict[str, _Log] = {}
        self._error: StoreUnavailableError | None = None
        self._interrupted: Exception | None = None
        row = self._write_conn.execute("SELECT COALESCE(MAX(ordinal), 0) FROM runs").fetchone()
        self._ordinal: int = row[0]
        # The writer lets go of the GIL around every SQLite call and must then wait for the
        # event loop to hand it back, by default up to 5 ms each time: a batch's few calls
        # could add tens of milliseconds to every commit, which a RunWorkflow(wait) waits for.
        _shorten_switch_interval(+1)
        self._holds_interval = True
        self._writer = threading.Thread(target=self._write_loop, name="store-write", daemon=True)
        self._writer.start()

    # ---- runs -----------------------------------------------------------------------------

    async def insert_run(self, run: pb.Run, fingerprint: str) -> StoredRun | None:
        self._check()
        run_id = run.run_id
        existing = self._live.get(run_id)
        if existing is not None:
            return existing
        self._ordinal += 1
        stored = self._live[run_id] = StoredRun(run, fingerprint, self._ordinal)
        self._logs[run_id] = _Log(stored.ordinal, 0)
        self._queue.put(
            (
                "insert",
                run_id,
                stored.ordinal,
                run.workflow,
                run.status,
                fingerprint,
                time.time_ns(),
                _labels_json(run.labels),
                run.SerializeToString(),
            )
        )
        return None

    async def get_run(self, run_id: str) -> StoredRun | None:
        live = self._live.get(run_id)
        if live is not None:
            return live
        row = await self._read(
            lambda c: c.execute(
                "SELECT run, fingerprint, ordinal FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        )
        live = self._live.get(run_id)  # inserted while we read
        if live is not None:
            return live
        if row is None:
            return None
        return StoredRun(pb.Run.FromString(row[0]), row[1], row[2])

    def update_run(self, run: pb.Run) -> None:
        ended = time.time_ns() if run.status in _ENDED else None
        self._queue.put(("update", run.run_id, run.status, ended, run.SerializeToString()))

    async def list_runs(self, query: RunQuery) -> tuple[list[pb.Run], int | None]:
        await self.sync()
        sql = ["SELECT run, ordinal FROM runs WHERE 1=1"]
        args: list[Any] = []
        if query.workflow:
            sql.append("AND workflow = ?")
            args.append(query.workflow)
        if query.workflows is not None:
            sql.append(f"AND workflow IN ({','.join('?' * len(query.workflows)) or 'NULL'})")
            args += sorted(query.workflows)
        if query.statuses:
            sql.append(f"AND status IN ({','.join('?' * len(query.statuses))})")
            args += sorted(query.statuses)
        for key, value in sorted(query.labels.items()):
            sql.append("AND json_extract(labels, ?) = ?")
            args += [f'$."{key}"', value]
        if query.before_ordinal is not None:
            sql.append("AND ordinal < ?")
            args.append(query.before_ordinal)
        sql.append("ORDER BY ordinal DESC LIMIT ?")
        args.append(query.page_size + 1)
        text = " ".join(sql)
        rows = await self._read(lambda c: c.execute(text, args).fetchall())
        runs = [self._freshest(pb.Run.FromString(r[0])) for r in rows[: query.page_size]]
        cursor = rows[query.page_size - 1][1] if len(rows) > query.page_size else None
        return runs, cursor

    def _freshest(self, run: pb.Run) -> pb.Run:
        live = self._live.get(run.run_id)
        return live.run if live is not None else run

    # ---- events ---------------------------------------------------------------------------

    def append_event(
        self, run_id: str, event: LoggedEvent, terminal: bool, key: tuple[int, int] = (0, 0)
    ) -> None:
        log_ = self._logs.get(run_id)
        if log_ is None:  # a resumed run: its history is in the database
            ordinal = self._live[run_id].ordinal
            log_ = self._logs[run_id] = _Log(ordinal, event.sequence - 1)
        log_.events.append(event)
        # Encoded by the writer (see LoggedEvent), off the event loop.
        self._queue.put(("event", run_id, log_.ordinal, event, *key, terminal))

    def save_checkpoint(self, run_id: str, checkpoint: str) -> None:
        self._queue.put(("checkpoint", run_id, checkpoint))

    async def unfinished_runs(self) -> list[Unfinished]:
        """Also makes them live again: the manager resumes or ends each of them."""
        going = (pb.RUN_STATUS_PENDING, pb.RUN_STATUS_RUNNING, pb.RUN_STATUS_WAITING_FOR_INPUT)

        def read(c: sqlite3.Connection) -> list[Unfinished]:
            found = []
            rows = c.execute(
                "SELECT run, fingerprint, ordinal, checkpoint FROM runs "
                f"WHERE status IN ({','.join('?' * len(going))}) ORDER BY ordinal",
                going,
            ).fetchall()
            for blob, fingerprint, ordinal, checkpoint in rows:
                last = c.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM events WHERE ordinal = ?", (ordinal,)
                ).fetchone()[0]
                keys = c.execute(
                    "SELECT invocation, idx FROM events WHERE ordinal = ? AND invocation > 0",
                    (ordinal,),
                ).fetchall()
                run = pb.Run.FromString(blob)
                run.last_sequence = last
                found.append(
                    Unfinished(
                        StoredRun(run, fingerprint, ordinal),
                        checkpoint,
                        last,
                        {(i, x) for i, x in keys},
                    )
                )
            return found

        found = await self._read(read)
        for u in found:
            self._live[u.stored.run.run_id] = u.stored
            self._logs[u.stored.run.run_id] = _Log(u.stored.ordinal, u.last_sequence)
        return found

    async def prune(self, ended_before_ns: int | None, keep_ended: int | None, limit: int) -> int:
        def pick(c: sqlite3.Connection) -> list[str]:
            ids: list[str] = []
            if ended_before_ns is not None:
                ids += [
                    r[0]
                    for r in c.execute(
                        "SELECT run_id FROM runs WHERE ended_ns IS NOT NULL AND ended_ns < ? "
                        "ORDER BY ended_ns LIMIT ?",
                        (ended_before_ns, limit),
                    )
                ]
            if keep_ended is not None and len(ids) < limit:
                ended = c.execute("SELECT COUNT(*) FROM runs WHERE ended_ns IS NOT NULL")
                extra = ended.fetchone()[0] - keep_ended - len(ids)
                if extra > 0:
                    ids += [
                        r[0]
                        for r in c.execute(
                            "SELECT run_id FROM runs WHERE ended_ns IS NOT NULL "
                            "ORDER BY ended_ns LIMIT ? OFFSET ?",
                            (min(extra, limit - len(ids)), len(ids)),
                        )
                    ]
            return ids

        await self.sync()
        ids = [i for i in await self._read(pick) if i not in self._live]
        if ids:
            self._queue.put(("delete", ids))
            await self.sync()
        return len(ids)

    def interrupt_followers(self, error: Exception) -> None:
        self._interrupted = error
        for log_ in self._logs.values():
            log_.wake()

    async def follow(self, run_id: str, after: int) -> AsyncIterator[LoggedEvent]:
        log_: _Log | None = None
        while True:
            self._check()
            # A log once held stays valid after the run ends (it is only dropped from
            # _logs), so its last committed events are served from memory, not re-read.
            if log_ is None or after < log_.base:
                log_ = self._logs.get(run_id)
            if log_ is None or after < log_.base:
                rows = await self._read(_page_reader(run_id, after))
                for (blob,) in rows:
                    after, kind = read_header(blob)
                    yield LoggedEvent(after, kind, blob)
                if rows:
                    continue
                log_ = self._logs.get(run_id)
                if log_ is None:
                    return  # the run is not live and its history is exhausted
            # The tail may be trimmed while we are suspended at a yield: index it afresh.
            while log_.base <= after < log_.base + log_.committed:
                event = log_.events[after - log_.base]
                after = event.sequence
                yield event
            if after < log_.base:
                continue  # fell behind the trimmed tail: read on from the database
            if log_.closed and after >= log_.base + log_.committed:
                return
            if self._interrupted is not None:
                raise self._interrupted
            await log_.wait()

    # ---- writing ----------------------------------------------------------------------------

    async def sync(self) -> None:
        """Wait until everything written so far has committed."""
        self._check()
        done: asyncio.Future[None] = self._loop.create_future()
        self.after_commit(functools.partial(_resolve, done))
        await done
        self._check()  # a failed batch resolves its waiters too

    def after_commit(self, callback: Callable[[], None]) -> None:
        if self._error is not None or not self._writer.is_alive():
            self._loop.call_soon(callback)
        else:
            self._queue.put(("barrier", callback))

    def check(self) -> None:
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _write_loop(self) -> None:
        conn = self._write_conn
        busy = False  # the last batch held the events of more than one run
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            gather(self._queue, busy)
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            committed: dict[str, tuple[int, bool]] = {}
            barriers: list[Barrier] = []
            error: StoreUnavailableError | None = None
            observe = self.observe_append
            began = time.perf_counter()
            try:
                _apply(conn, batch, committed, barriers)
                if observe is not None:
                    observe(time.perf_counter() - began)
            except sqlite3.Error as e:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                error = StoreUnavailableError(
                    f"the run store {self.path} failed: {e}; the server takes no more runs "
                    "until it is fixed and restarted"
                )
                logs.event(log, logging.ERROR, "store_failed", path=str(self.path), error=str(e))
            busy = len(committed) > 1
            try:
                self._loop.call_soon_threadsafe(self._committed, committed, barriers, error)
            except RuntimeError:
                return  # the loop is closed: nobody is waiting any more
            if error is not None:
                return

    def _committed(
        self,
        committed: dict[str, tuple[int, bool]],
        barriers: list[Barrier],
        error: StoreUnavailableError | None,
    ) -> None:
        if error is not None:
            self._error = error
            for waiting in self._logs.values():
                waiting.wake()
            for callback in barriers:
                callback()  # its caller sees the error through check()
            return
        for run_id, (seq, terminal) in committed.items():
            log_ = self._logs.get(run_id)
            if log_ is None:
                continue
            log_.committed = seq - log_.base
            if log_.committed > 2 * TAIL:
                # Keep a bounded tail of a long run in memory; older events are read back.
                drop = log_.committed - TAIL
                del log_.events[:drop]
                log_.base += drop
                log_.committed -= drop
            if terminal:
                log_.closed = True
                # Ended and durable: later readers take it from the database.
                del self._logs[run_id]
                self._live.pop(run_id, None)
            log_.wake()
        for callback in barriers:
            callback()

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._loop.run_in_executor(self._reader, fn, self._read_conn)

    async def close(self) -> None:
        if self._writer.is_alive():
            self._queue.put(None)
            await self._loop.run_in_executor(None, self._writer.join)
        self._reader.shutdown(wait=True)
        self._write_conn.close()
        self._read_conn.close()
        if self._holds_interval:
            self._holds_interval = False
            _shorten_switch_interval(-1)


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():  # its waiter may have gone (cancelled)
        done.set_result(None)


def gather(
    work: queue.SimpleQueue[Any], busy: bool, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Let more work gather before a batch is taken: LINGER, then, when the last batch
    was ``busy`` (it held more than one run's events), a LINGER more at a time while work
    keeps coming, up to MAX_LINGER. Most of a commit's cost is per batch (the pages it
    writes, its statements, handing the GIL back and forth), so under load a longer batch
    costs less per run, while a lone caller's commit waits only LINGER. Whether to wait
    longer does not hang on a rate, which a slower server would fall below and then stay
    below, its batches small. Sleeping rather than polling keeps the writer from contending
    for the GIL while the loop produces the work."""
    seen = work.qsize()
    sleep(LINGER)
    if not busy:
        return
    for _ in range(round(MAX_LINGER / LINGER) - 1):
        queued = work.qsize()
        if queued == seen:
            return
        seen = queued
        sleep(LINGER)


def _apply(
    conn: sqlite3.Connection,
    batch: list[tuple[Any, ...]],
    committed: dict[str, tuple[int, bool]],
    barriers: list[Barrier],
) -> None:
    """Write one batch in one transaction, a statement per kind of row: a run's several
    status updates and checkpoints in a batch come down to its latest one."""
    deletes: list[tuple[str]] = []
    inserts: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    updates: dict[str, tuple[Any, ...]] = {}
    checkpoints: dict[str, str] = {}
    for op in batch:
        kind = op[0]
        if kind == "event":
            _, run_id, ordinal, event, invocation, idx, terminal = op
            seq = event.sequence
            events.append((ordinal, seq, invocation, idx, event.wire))
            committed[run_id] = (seq, terminal)
        elif kind == "update":
            updates[op[1]] = op
        elif kind == "checkpoint":
            checkpoints[op[1]] = op[2]
        elif kind == "insert":
            inserts.append(op[1:])
        elif kind == "barrier":
            barriers.append(op[1])
        elif kind == "delete":
            deletes += [(run_id,) for run_id in op[1]]
    conn.execute("BEGIN")
    if deletes:
        conn.executemany(
            "DELETE FROM events WHERE ordinal = (SELECT ordinal FROM runs WHERE run_id = ?)",
            deletes,
        )
        conn.executemany("DELETE FROM runs WHERE run_id = ?", deletes)
    if inserts:
        # A run created in this batch is written once, as its latest update left it: a
        # short run often starts and ends within one batch.
        rows = []
        for run_id, ordinal, workflow, status, fingerprint, created, labels, blob in inserts:
            ended_ns = None
            latest = updates.pop(run_id, None)
            if latest is not None:
                _, _, status, ended_ns, blob = latest
                if ended_ns is not None:
                    checkpoints.pop(run_id, None)
            rows.append(
                (run_id, ordinal, workflow, status, fingerprint, created, labels, blob, ended_ns)
            )
        _insert(
            conn,
            "INSERT OR IGNORE INTO runs (run_id, ordinal, workflow, status, fingerprint, "
            "created_ns, labels, run, ended_ns) VALUES ",
            rows,
        )
    if events:
        _insert(conn, "INSERT OR IGNORE INTO events VALUES ", events)
    going = [(run_id, st, blob) for _, run_id, st, end, blob in updates.values() if end is None]
    ended = [(run_id, st, end, blob) for _, run_id, st, end, blob in updates.values() if end]
    for run_id, *_ in ended:
        checkpoints.pop(run_id, None)  # an ended run needs no checkpoint any more
    if going:
        _update(conn, "status = v.column2, run = v.column3", going)
    if ended:
        _update(
            conn,
            "status = v.column2, ended_ns = v.column3, run = v.column4, checkpoint = NULL",
            ended,
        )
    if checkpoints:
        _update(conn, "checkpoint = v.column2", list(checkpoints.items()))
    conn.execute("COMMIT")


# Rows go to SQLite many to a statement rather than one by one (executemany): the sqlite3
# module lets go of the GIL around every statement it prepares and steps, and each time it
# takes the GIL back it may wait a whole switch interval (5 ms) for the busy event loop.
_ROWS_PER_STATEMENT = 1000
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


def _chunks(
    conn: sqlite3.Connection, rows: list[tuple[Any, ...]]
) -> Iterator[tuple[str, list[Any]]]:
    """``rows`` in groups as large as SQLite's limit on variables allows: a ``VALUES``
    list of placeholders for each group, and its parameters flattened."""
    width = len(rows[0])
    per = max(
        1, min(_ROWS_PER_STATEMENT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    )
    row = "(" + ",".join("?" * width) + ")"
    for i in range(0, len(rows), per):
        group = rows[i : i + per]
        yield ",".join([row] * len(group)), [v for r in group for v in r]


def _insert(conn: sqlite3.Connection, head: str, rows: list[tuple[Any, ...]]) -> None:
    for values, params in _chunks(conn, rows):
        conn.execute(head + values, params)


def _update(conn: sqlite3.Connection, assignments: str, rows: list[tuple[Any, ...]]) -> None:
    """UPDATE runs from ``rows`` of (run_id, value, ...): ``assignments`` name the values
    ``v.column2`` onwards."""
    if not _UPDATE_FROM:
        # Without UPDATE ... FROM: one statement per row, the values in column order.
        plain = re.sub(r"v\.column\d+", "?", assignments)
        conn.executemany(
            f"UPDATE runs SET {plain} WHERE run_id = ?",
            [(*r[1:], r[0]) for r in rows],
        )
        return
    for values, params in _chunks(conn, rows):
        conn.execute(
            f"UPDATE runs SET {assignments} FROM (VALUES {values}) AS v "
            "WHERE runs.run_id = v.column1",
            params,
        )
