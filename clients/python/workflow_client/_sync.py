"""The blocking client: the async one driven on a private event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

from ._client import DEFAULT_ADDRESS, RunHandle, WorkflowClient
from ._types import Event, Run, WorkflowInfo

T = TypeVar("T")


class SyncWorkflowClient:
    """``with SyncWorkflowClient("host:port") as client: client.run("echo", message="hi")``

    Not for use inside a running event loop; use :class:`WorkflowClient` there.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = self._call(_make(address, options))

    def _call(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> SyncWorkflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._call(self._loop.shutdown_asyncgens())  # iterators still open end their calls
            self._call(self._client.close())
            # Let calls just cancelled receive their status before the loop closes under them.
            pending = asyncio.all_tasks(self._loop)
            if pending:
                self._call(asyncio.wait(pending, timeout=1.0))
            self._loop.close()

    def run(self, workflow: str, /, **kwargs: Any) -> Any:
        return self._call(self._client.run(workflow, **kwargs))

    def start(self, workflow: str, /, **kwargs: Any) -> SyncRunHandle:
        return SyncRunHandle(self, self._call(self._client.start(workflow, **kwargs)))

    def stream(self, workflow: str, /, **kwargs: Any) -> SyncRunHandle:
        return SyncRunHandle(self, self._client.stream(workflow, **kwargs))

    def handle(self, run_id: str) -> SyncRunHandle:
        return SyncRunHandle(self, self._client.handle(run_id))

    def get_run(self, run_id: str) -> Run:
        run: Run = self._call(self._client.get_run(run_id))
        return run

    def cancel(self, run_id: str) -> Run:
        run: Run = self._call(self._client.cancel(run_id))
        return run

    def send_event(self, run_id: str, type: str, /, **data: Any) -> Run:
        run: Run = self._call(self._client.send_event(run_id, type, **data))
        return run

    def list_workflows(self) -> list[WorkflowInfo]:
        found: list[WorkflowInfo] = self._call(self._client.list_workflows())
        return found

    def list_runs(self, **filters: Any) -> Iterator[Run]:
        return self._iterate(self._client.list_runs(**filters))

    def _iterate(self, it: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._call(it.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            # Left early (break, or garbage-collected): close the async iterator on the loop,
            # which ends its call, instead of leaving it pending on a loop that may not run
            # again.
            aclose = getattr(it, "aclose", None)
            if aclose is not None and not self._loop.is_closed() and not self._loop.is_running():
                self._call(aclose())


async def _make(address: str, options: dict[str, Any]) -> WorkflowClient:
    return WorkflowClient(address, **options)  # the channel must be made on the loop


class SyncRunHandle:
    def __init__(self, client: SyncWorkflowClient, handle: RunHandle) -> None:
        self._client = client
        self._handle = handle
        self.run_id = handle.run_id

    def events(self, after: int = 0, kinds: Iterable[str] | None = None) -> Iterator[Event]:
        return self._client._iterate(self._handle.events(after, kinds))

    def result(self) -> Any:
        return self._client._call(self._handle.result())

    def get(self) -> Run:
        run: Run = self._client._call(self._handle.get())
        return run

    def cancel(self) -> Run:
        run: Run = self._client._call(self._handle.cancel())
        return run

    def send_event(self, type: str, /, **data: Any) -> Run:
        run: Run = self._client._call(self._handle.send_event(type, **data))
        return run


__all__ = ["SyncRunHandle", "SyncWorkflowClient"]
