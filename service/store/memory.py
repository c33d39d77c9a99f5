"""The in-memory store: for tests and throw-away use; everything is lost on exit."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator

from .._pb import workflow_pb2 as pb
from ..wire import LoggedEvent
from .base import RunLog, RunQuery, Store, StoredRun


class MemoryStore(Store):
    def __init__(self) -> None:
        self._runs: dict[str, StoredRun] = {}
        self._logs: dict[str, RunLog] = {}
        self._ordinal = 0
        self._interrupted: Exception | None = None
        self._ended: deque[tuple[int, str]] = deque()  # (ended at, run_id), oldest first

    async def insert_run(self, run: pb.Run, fingerprint: str) -> StoredRun | None:
        run_id = run.run_id
        existing = self._runs.get(run_id)
        if existing is not None:
            return existing
        self._ordinal += 1
        self._runs[run_id] = StoredRun(run, fingerprint, self._ordinal)
        self._logs[run_id] = RunLog()
        return None

    async def get_run(self, run_id: str) -> StoredRun | None:
        return self._runs.get(run_id)

    def update_run(self, run: pb.Run) -> None:
        pass  # the stored message is the live one

    async def list_runs(self, query: RunQuery) -> tuple[list[pb.Run], int | None]:
        page: list[pb.Run] = []
        for stored in reversed(self._runs.values()):
            if query.before_ordinal is not None and stored.ordinal >= query.before_ordinal:
                continue
            run = stored.run
            if query.workflow and run.workflow != query.workflow:
                continue
            if query.workflows is not None and run.workflow not in query.workflows:
                continue
            if query.statuses and run.status not in query.statuses:
                continue
            if any(run.labels.get(k) != v for k, v in query.labels.items()):
                continue
            if len(page) == query.page_size:
                return page, self._runs[page[-1].run_id].ordinal
            page.append(run)
        return page, None

    def interrupt_followers(self, error: Exception) -> None:
        self._interrupted = error
        for log in self._logs.values():
            log.wake()

    def append_event(
        self, run_id: str, event: LoggedEvent, terminal: bool, key: tuple[int, int] = (0, 0)
    ) -> None:
        log = self._logs[run_id]
        log.events.append(event)
        if terminal:
            log.closed = True
            self._ended.append((time.time_ns(), run_id))
        if log.waiters:
            log.wake()

    async def prune(self, ended_before_ns: int | None, keep_ended: int | None, limit: int) -> int:
        gone = 0
        while self._ended and gone < limit:
            ended_at, run_id = self._ended[0]
            too_old = ended_before_ns is not None and ended_at < ended_before_ns
            too_many = keep_ended is not None and len(self._ended) > keep_ended
            if not (too_old or too_many):
                break
            self._ended.popleft()
            self._runs.pop(run_id, None)
            self._logs.pop(run_id, None)
            gone += 1
        return gone

    async def close(self) -> None:
        pass

    async def follow(self, run_id: str, after: int) -> AsyncIterator[LoggedEvent]:
        log = self._logs[run_id]
        events = log.events
        i = after  # sequence n sits at index n - 1
        while True:
            while i < len(events):
                yield events[i]
                i += 1
            if log.closed:
                return
            if self._interrupted is not None:
                raise self._interrupted
            await log.wait()
