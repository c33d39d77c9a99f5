"""Test workflows, a byte-forwarding TCP proxy and a server running on its own thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import examples
from engine import StartEvent, StopEvent, Workflow, step
from service.server import WorkflowServer

# ---- workflows only the tests host ---------------------------------------------------------


class BoomInput(StartEvent):
    message: str = "boom"


class BoomWorkflow(Workflow):
    """Its only step raises ValueError."""

    @step
    async def explode(self, ev: BoomInput) -> StopEvent:
        raise ValueError(ev.message)


class SlowInput(StartEvent):
    seconds: float = 30.0


class SlowWorkflow(Workflow):
    """Sleeps for `seconds`, then returns them."""

    @step
    async def nap(self, ev: SlowInput) -> StopEvent:
        await asyncio.sleep(ev.seconds)
        return StopEvent(result=ev.seconds)


TEST_WORKFLOWS: dict[str, Workflow] = {"boom": BoomWorkflow(), "slow": SlowWorkflow()}


def all_workflows() -> dict[str, Workflow]:
    return dict(examples.WORKFLOWS, **TEST_WORKFLOWS)


# ---- a TCP proxy whose connections the test can cut ----------------------------------------


class TcpProxy:
    """Listens on 127.0.0.1 and forwards bytes both ways to ``127.0.0.1:upstream_port``.

    ``drop()`` aborts every open connection (both sides) but keeps listening; ``close()``
    also stops listening, as if the server were gone for good; ``black_hole()`` keeps the
    connections open but discards everything either side sends from then on, like a peer
    that vanished without closing anything.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.accepted = 0  # connections accepted so far
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.black_holed = False

    def black_hole(self) -> None:
        self.black_holed = True

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._transports.add(writer.transport)
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            self._transports.discard(writer.transport)
            return
        self._transports.add(up_writer.transport)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.transport.abort()
                self._transports.discard(w.transport)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.black_holed:
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()  # one side gone: cut the other too

    def drop(self) -> int:
        """Abort all open connections; return how many transports were cut."""
        cut = list(self._transports)
        for transport in cut:
            transport.abort()
        self._transports.clear()
        return len(cut)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


# ---- a server on a background thread, for the blocking client ------------------------------


class ServerThread:
    """Runs a WorkflowServer (given ``options``) on its own event loop in a daemon thread."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="workflow-server", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the server thread did not start in time")
        if self._error is not None:
            raise RuntimeError("the server thread failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:
            self._error = e
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = WorkflowServer(all_workflows(), **self.options)
        self.port = await server.start("127.0.0.1", 0)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop(0)
