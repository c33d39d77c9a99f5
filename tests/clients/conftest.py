from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from workflow_client import WorkflowClient

from service.server import WorkflowServer

from .helpers import ServerThread, TcpProxy, all_workflows


@dataclass
class Served:
    server: WorkflowServer
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """A real server with the examples and the test workflows, on an ephemeral port."""
    server = WorkflowServer(all_workflows())
    port = await server.start("127.0.0.1", 0)
    try:
        yield Served(server, port)
    finally:
        await server.stop(0)


@pytest.fixture
async def client(served: Served) -> AsyncIterator[WorkflowClient]:
    async with WorkflowClient(served.address, reconnect_delay=0.05) as c:
        yield c


@pytest.fixture
async def proxy(served: Served) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of ``served``."""
    p = TcpProxy(served.port)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture(scope="module")
def server_thread() -> Iterator[ServerThread]:
    """A real server on its own event loop in a background thread (for the blocking client)."""
    thread = ServerThread().start()
    try:
        yield thread
    finally:
        thread.stop()
