"""``WorkflowHandler``: the awaitable result of ``workflow.run()``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .errors import WorkflowCancelledError, WorkflowRuntimeError
from .events import Event
from .status import RunStatus

if TYPE_CHECKING:
    from .context import Context
    from .run import Run
    from .workflow import Workflow


class WorkflowHandler(asyncio.Future[Any]):
    """A future for the run's result, plus its stream, its context and control.

    ``await handler`` returns the StopEvent's ``result`` (or the StopEvent itself when the
    workflow returns a StopEvent subclass) and raises the run's error otherwise.
    Cancelling the future (``handler.cancel()``, or cancelling a task that awaits it)
    cancels the run, which is how a child run stops with its parent.
    """

    def __init__(self, run: Run) -> None:
        super().__init__(loop=run.loop)
        self._run = run
        self._ctx = run.ctx  # the run lets go of its context when it ends

    @property
    def ctx(self) -> Context:
        return self._ctx

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def workflow(self) -> Workflow:
        return self._run.workflow

    @property
    def status(self) -> RunStatus:
        return self._run.status

    @property
    def error(self) -> BaseException | None:
        ending = self._run.ending
        return ending[2] if ending is not None else None

    def is_done(self) -> bool:
        return self.done()

    def cancel_run(self) -> None:
        """Cancel the run: every task it started is cancelled; awaiting the handler then
        raises :class:`WorkflowCancelledError`."""
        self._run.cancel(via_future=False)

    def cancel(self, msg: Any | None = None) -> bool:
        if self.done():
            return False
        # Even when the run is already ending, whoever awaits this future asked to be
        # cancelled, so it ends cancelled rather than with the run's error.
        self._run.via_future = True
        self._run.cancel(via_future=True)
        return True

    def settle(
        self, status: RunStatus, result: Any, error: BaseException | None, via_future: bool
    ) -> None:
        if self.done():
            return
        if via_future:
            super().cancel()
        elif error is not None:
            self.set_exception(error)
            if status is RunStatus.CANCELLED or self._run.listener is not None:
                # Asked for, or heard by the listener's run_finished: not worth a "never
                # retrieved" warning.
                self.exception()
        else:
            self.set_result(result)

    async def stream_events(self) -> AsyncIterator[Event]:
        """Every event written to the run's stream, from the first, then live; ends after
        the StopEvent. Any number of consumers may iterate, each at its own pace. If the run
        did not succeed, the iteration raises its error after the last event."""
        run = self._run
        if run.stream is None:
            raise WorkflowRuntimeError("this run was started with retain_stream=False")
        i = 0
        while True:
            stream = run.stream
            while i < len(stream):
                yield stream[i]
                i += 1
            if self.done():
                break
            waiter: asyncio.Future[None] = run.loop.create_future()
            run.stream_waiters.append(waiter)
            await waiter
        if self.cancelled():
            raise WorkflowCancelledError("the run was cancelled")
        error = self.exception()
        if error is not None:
            raise error
