"""The lifecycle listener: how a host (logging, metrics, an event log, persistence) hears
what a run does. Attach one with ``workflow.start_run(..., listener=...)``; with none attached
the engine skips every call.

Methods are plain functions called synchronously on the event loop at the moment the thing
happens, in order; they must not block. ``invocation`` identifies one step invocation
within a run and survives a checkpoint (a re-run after resume keeps its number), and
``index`` counts the stream events that invocation wrote, so a host can recognise an event
written again by a re-run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import Event
    from .handler import WorkflowHandler
    from .status import RunStatus


class RunListener:
    """Override what you need; every method does nothing by default."""

    def run_started(self, run: WorkflowHandler, start_event: Event | None) -> None:
        """The run began; ``start_event`` is None when it resumed from a checkpoint."""

    def step_started(
        self, run: WorkflowHandler, step: str, invocation: int, attempt: int, event: Event
    ) -> None:
        """An attempt of a step began (``attempt`` starts at 1)."""

    def step_finished(
        self,
        run: WorkflowHandler,
        step: str,
        invocation: int,
        attempt: int,
        duration: float,
        result: Event | None,
        error: BaseException | None,
    ) -> None:
        """An attempt ended, with the event it returned or the error it raised."""

    def step_completed(self, run: WorkflowHandler, step: str, invocation: int) -> None:
        """An invocation is done and what it returned has been dispatched: the run is
        between steps, the moment to take a checkpoint (``run.ctx.to_dict()``)."""

    def event_sent(self, run: WorkflowHandler, event: Event, step: str | None) -> None:
        """An event was dispatched to steps (returned, sent by ``step``, or from outside)."""

    def stream_event(
        self, run: WorkflowHandler, event: Event, step: str | None, invocation: int, index: int
    ) -> None:
        """An event was written to the run's stream (``step`` None: by the engine)."""

    def input_required(self, run: WorkflowHandler, event: Event, step: str | None) -> None:
        """The run asked for outside input; ``event`` was also written to the stream."""

    def status_changed(self, run: WorkflowHandler, status: RunStatus) -> None:
        """RUNNING <-> WAITING_FOR_INPUT while the run goes; terminal statuses too."""

    def run_finished(
        self, run: WorkflowHandler, status: RunStatus, result: Any, error: BaseException | None
    ) -> None:
        """The run ended (succeeded, failed, cancelled or timed out); no call follows.
        Having heard ``error`` here, the host need not read it from the handler: asyncio
        does not report it as never retrieved."""
