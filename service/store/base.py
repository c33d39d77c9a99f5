"""The store interface: the run table and each run's event log.

The run manager and the RPC handlers talk only to this interface, so a durable or
networked backend replaces the in-memory one without touching them. Appends are
synchronous (the engine reports events synchronously, in order); a backend that writes
to disk batches them behind this call. ``follow`` serves history and then live events, and
each follower reads at its own pace from the log rather than from a queue of its own, so a
slow subscriber costs no memory beyond the log itself.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from .._pb import workflow_pb2 as pb
from ..wire import LoggedEvent


class RunLog:
    """One run's events in memory, and the followers waiting for more of them."""

    __slots__ = ("closed", "events", "waiters")

    def __init__(self) -> None:
        self.events: list[LoggedEvent] = []
        self.closed = False  # the terminal event is in
        self.waiters: list[asyncio.Future[None]] = []

    async def wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        await waiter

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)


@dataclass(slots=True)
class StoredRun:
    run: pb.Run
    fingerprint: str  # workflow + canonical input, for idempotent starts
    ordinal: int = 0  # creation order, for stable paging


@dataclass(slots=True)
class Unfinished:
    """A run that was going when the server last stopped, as the store knows it."""

    stored: StoredRun
    checkpoint: str | None  # the engine checkpoint (JSON) after its last completed step
    last_sequence: int  # of its last durable event
    stream_keys: set[tuple[int, int]]  # (invocation, index) of events steps wrote


@dataclass(slots=True)
class RunQuery:
    workflow: str = ""
    statuses: frozenset[int] = frozenset()
    labels: dict[str, str] = field(default_factory=dict)
    page_size: int = 100
    before_ordinal: int | None = None  # page cursor: runs created before this one
    workflows: frozenset[str] | None = None  # only runs of these (None: any workflow)


class Store(ABC):
    @abstractmethod
    async def insert_run(self, run: pb.Run, fingerprint: str) -> StoredRun | None:
        """Insert a new run; returns the run already live under the same run_id instead, if
        any. Callers look a client-chosen run_id up with ``get_run`` first, and call
        ``sync()`` before they tell anyone the run exists."""

    @abstractmethod
    async def get_run(self, run_id: str) -> StoredRun | None: ...

    @abstractmethod
    def update_run(self, run: pb.Run) -> None:
        """Record a change of the run's status, result or timestamps."""

    @abstractmethod
    async def list_runs(self, query: RunQuery) -> tuple[list[pb.Run], int | None]:
        """Runs matching the query, newest first, and the cursor of the next page."""

    @abstractmethod
    def append_event(
        self, run_id: str, event: LoggedEvent, terminal: bool, key: tuple[int, int] = (0, 0)
    ) -> None:
        """Append the next event of run ``run_id``; ``terminal`` closes the run's log.
        ``key`` is (invocation, index) for events a step wrote, so a re-run can be
        recognised."""

    #: Whether runs survive a restart here (and so may be resumed rather than cancelled).
    durable: bool = False

    #: Called with the seconds each batch commit took, by stores that write to disk; set
    #: by the server when metrics are on. May be called from a writer thread. (An append
    #: in memory is a list append: timing it would cost more than it does.)
    observe_append: Callable[[float], None] | None = None

    def save_checkpoint(self, run_id: str, checkpoint: str) -> None:  # noqa: B027
        """Keep the run's latest engine checkpoint (JSON); only durable stores need to."""

    async def unfinished_runs(self) -> list[Unfinished]:
        """Runs that were neither ended nor cancelled when the server last stopped."""
        return []

    @abstractmethod
    async def prune(self, ended_before_ns: int | None, keep_ended: int | None, limit: int) -> int:
        """Delete up to ``limit`` ended runs with their events: those that ended before
        ``ended_before_ns``, and the oldest beyond the newest ``keep_ended``. Returns how
        many went; callers repeat while it returns ``limit``."""

    @abstractmethod
    def interrupt_followers(self, error: Exception) -> None:
        """End every ``follow`` in progress with ``error`` (the server is going away)."""

    @abstractmethod
    def follow(self, run_id: str, after: int) -> AsyncIterator[LoggedEvent]:
        """Events with sequence > ``after``: history first, then live, until the log closes."""

    async def sync(self) -> None:  # noqa: B027 - optional: nothing to wait for in memory
        """Wait until everything written so far is durable."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop once everything written so far is durable, or has
        failed to be (``check`` then raises): at once where nothing waits for a disk."""
        callback()

    def check(self) -> None:  # noqa: B027 - optional: memory does not fail
        """Raise the error that stopped the store from writing, if one did."""

    @abstractmethod
    async def close(self) -> None:
        """Flush and release resources."""
