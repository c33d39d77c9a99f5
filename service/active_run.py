"""A run in flight: hears the engine and turns what it hears into the run's record and
event log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from engine import (
    CheckpointError,
    Event,
    InputRequiredEvent,
    RunListener,
    RunStatus,
    StopEvent,
    WorkflowHandler,
)

from . import convert, logs
from ._pb import workflow_pb2 as pb
from .errors import ResultTooLargeError
from .observer import EventCount, RunObserver, observe_run
from .wire import LoggedEvent, StepData, data_field, result_field, run_id_field

if TYPE_CHECKING:
    from .runs import RunManager

# The run manager's logger: a run's lines read as the manager's, whichever module writes them.
log = logging.getLogger("service.runs")


class ActiveRun(RunListener):
    """One run in flight: hears the engine and turns what it hears into the event log."""

    __slots__ = (
        "began",
        "checkpoint_due",
        "detached",
        "event_counts",
        "handler",
        "input",
        "input_field",
        "key",
        "manager",
        "observers",
        "queued",
        "resumed",
        "run",
        "run_id",
        "run_id_field",
        "seen",
        "sequence",
        "settled",
        "slot",
        "store",
        "trace_id",
        "unsaved",
        "waiters",
    )

    def __init__(
        self,
        manager: RunManager,
        run: pb.Run,
        input: dict[str, Any],
        resumed: bool = False,
        seen: set[tuple[int, int]] | None = None,
        trace_id: str | None = None,
        input_field: bytes | None = None,
    ) -> None:
        """``input_field``: the RUN_STARTED event's encoded data field, when the caller has
        the input's Struct serialized already (None: encoded from ``input``)."""
        self.manager = manager
        self.input = input
        self.input_field = input_field
        self.store = manager.store
        self.run = run
        self.run_id = run_id = run.run_id
        self.run_id_field = run_id_field(run_id)  # the start of every event's bytes
        self.sequence = run.last_sequence  # the record's, kept here too: read for every event
        self.handler: WorkflowHandler | None = None
        self.settled = False  # ended (or left to the next server), its record durable
        self.waiters: list[asyncio.Future[None]] | None = None  # see until_ended
        self.began = time.perf_counter()
        self.resumed = resumed
        # (invocation, index) of stream events already in the log before a restart: a
        # re-run step writing them again must not repeat them to subscribers.
        self.seen = seen or None
        self.checkpoint_due = False  # see service.checkpoints
        self.unsaved = 0.0  # seconds its steps ran since its last checkpoint
        self.detached = False  # left to be resumed by the next server; record nothing more
        self.key: str | None = None  # the concurrency_key whose slot it holds or waits for
        self.slot = False  # holds one of its key's slots
        # While it waits for a slot of its key: the events sent to it, delivered on start.
        self.queued: list[tuple[str, dict[str, Any]]] | None = None
        self.trace_id = trace_id  # the caller's, for log lines
        self.observers: tuple[RunObserver, ...] = ()
        self.event_counts: Mapping[int, EventCount] | None = None
        if manager.observers:
            self.observers, self.event_counts = observe_run(
                manager.observers, run_id, run.workflow, resumed
            )

    def _emit(
        self,
        kind: pb.EventKind.ValueType,
        type_name: str,
        step: str | None,
        data: bytes | StepData,
        terminal: bool = False,
        key: tuple[int, int] = (0, 0),
    ) -> None:
        if self.detached:
            return
        run = self.run
        sequence = self.sequence = self.sequence + 1
        run.last_sequence = sequence
        event = LoggedEvent.lazy(
            (self.run_id_field, sequence, kind, type_name, step, data, time.time_ns())
        )
        if terminal:
            self.store.update_run(run)  # the final record, with its last sequence
        self.store.append_event(self.run_id, event, terminal, key)
        counts = self.event_counts
        if counts is not None:
            counts[kind].value += 1

    def run_started(self, run: WorkflowHandler, start_event: Event | None) -> None:
        self.run.status = pb.RUN_STATUS_RUNNING
        if self.resumed and self.run.last_sequence:
            self.store.update_run(self.run)
            self._log_run(logging.INFO, "run_resumed", after_sequence=self.run.last_sequence)
            return
        convert.stamp(self.run.started_at)
        self.store.update_run(self.run)
        self._emit(
            pb.EVENT_KIND_RUN_STARTED,
            type(start_event).__name__,
            None,
            data_field(self.input) if self.input_field is None else self.input_field,
        )
        if log.isEnabledFor(logging.INFO):  # see run_finished
            self._log_run(logging.INFO, "run_started", trace_id=self.trace_id)

    def _log_run(self, level: int, what: str, **fields: Any) -> None:
        """A line about this run: its id and workflow, then ``fields``."""
        logs.event(log, level, what, run_id=self.run_id, workflow=self.run.workflow, **fields)

    def step_started(
        self, run: WorkflowHandler, step: str, invocation: int, attempt: int, event: Event
    ) -> None:
        # Encoded with the rest of the event, when it is first read (see wire.LoggedEvent).
        data: StepData = (attempt, invocation, None, None)
        self._emit(pb.EVENT_KIND_STEP_STARTED, type(event).__name__, step, data)
        for observer in self.observers:
            observer.step_started(step, invocation, attempt)
        if attempt > 1:
            self._log_step(logging.INFO, "step_retrying", step, invocation, attempt)

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
        self.unsaved += duration
        text = None if error is None else f"{type(error).__name__}: {error}"
        # Milliseconds to three places as whole microseconds over 1000: round(x, 3) would
        # go through a decimal string.
        data: StepData = (attempt, invocation, round(duration * 1e6) / 1000, text)
        type_name = type(result).__name__ if result is not None else ""
        self._emit(pb.EVENT_KIND_STEP_FINISHED, type_name, step, data)
        for observer in self.observers:
            observer.step_finished(step, invocation, attempt, duration, error)
        if text is not None:
            self._log_step(logging.WARNING, "step_failed", step, invocation, attempt, text)

    def _log_step(
        self,
        level: int,
        what: str,
        step: str,
        invocation: int,
        attempt: int,
        error: str | None = None,
    ) -> None:
        self._log_run(
            level,
            what,
            step=step,
            invocation=invocation,
            attempt=attempt,
            error=error,
            trace_id=self.trace_id,
        )

    def stream_event(
        self, run: WorkflowHandler, event: Event, step: str | None, invocation: int, index: int
    ) -> None:
        if isinstance(event, StopEvent):
            return  # reported as the terminal RUN_SUCCEEDED event
        key = (invocation, index)
        if self.seen is not None and key in self.seen:
            return  # written before the restart by the invocation now running again
        kind = (
            pb.EVENT_KIND_INPUT_REQUIRED
            if isinstance(event, InputRequiredEvent)
            else pb.EVENT_KIND_STREAM
        )
        data = data_field(event.model_dump(mode="json", fallback=repr))
        self._emit(kind, type(event).__name__, step, data, key=key)

    def step_completed(self, run: WorkflowHandler, step: str, invocation: int) -> None:
        if self.store.durable:
            self.manager.checkpoints.add(self)  # see service.checkpoints

    def save_checkpoint(self) -> None:
        self.checkpoint_due = False
        self.unsaved = 0.0
        handler = self.handler
        if handler is None or handler.done() or self.detached:
            return
        try:
            # pydantic-core's encoder: the same JSON as json.dumps (NaN and Infinity
            # included), non-ASCII left unescaped, in a third of the time; a checkpoint is
            # encoded after every completed step.
            text = to_json(handler.ctx.to_dict()).decode()
        except (CheckpointError, TypeError, ValueError) as e:
            self._log_run(logging.ERROR, "checkpoint_failed", error=str(e), trace_id=self.trace_id)
            return
        self.store.save_checkpoint(self.run.run_id, text)

    def status_changed(self, run: WorkflowHandler, status: RunStatus) -> None:
        if not status.is_terminal and not self.detached:
            self.run.status = convert.STATUS_TO_PB[status]
            self.store.update_run(self.run)

    def run_finished(
        self, run: WorkflowHandler, status: RunStatus, result: Any, error: BaseException | None
    ) -> None:
        if self.detached:
            self._release(None)
            return
        record = self.run
        raw = b""
        if error is None:
            value = convert.to_value(result)
            raw = value.SerializeToString()  # also the event's: see result_field
            if len(raw) > self.manager.max_result_bytes:
                # Larger results would make every read of the run fail at the message limit.
                status = RunStatus.FAILED
                error = ResultTooLargeError(len(raw), self.manager.max_result_bytes)
            else:
                record.result.CopyFrom(value)
        record.status = convert.STATUS_TO_PB[status]
        convert.stamp(record.ended_at)
        if error is None:
            data = result_field(raw)
            type_name = "StopEvent"
        else:
            step = getattr(error, "step", "") or ""
            record.error.CopyFrom(
                pb.RunError(type=type(error).__name__, message=str(error), step=step)
            )
            data = data_field({"type": type(error).__name__, "message": str(error), "step": step})
            type_name = type(error).__name__
        self._emit(convert.TERMINAL_KIND[status], type_name, None, data, terminal=True)
        self._release(str(status))  # the StrEnum's value, without its slow .value
        # Checked here, not only inside logs.event: gathering a line's fields (keyword
        # arguments, the protobuf reads) costs more than the rest of this method.
        if not log.isEnabledFor(logging.INFO):
            return
        self._log_run(
            logging.INFO,
            "run_ended",
            status=str(status),
            duration_ms=round((time.perf_counter() - self.began) * 1000, 1),
            error=str(error) if error is not None else None,
            step=record.error.step or None,
            trace_id=self.trace_id,
        )

    def _release(self, status: str | None) -> None:
        # Dropped here rather than with this object, which a caller still waiting on
        # the run may hold a little longer: the run's spans and series end with it.
        observers, self.observers = self.observers, ()
        for observer in observers:
            observer.run_ended(status)
        self.manager.ended(self)
        # Waiters hear of the end once the store has it: a caller answered then needs no
        # wait of its own for the commit, which would wake it a second time.
        self.store.after_commit(self._settle)

    def _settle(self) -> None:
        self.settled = True
        waiters, self.waiters = self.waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def until_ended(self) -> asyncio.Future[None]:
        """A future of the caller's own that completes when the run has ended and the store
        holds its last record durably (or failed to: ``store.check()`` says): cancelling it
        (the caller went away) leaves the run and its other waiters alone. Cheaper than
        ``asyncio.shield`` of a shared future, which takes two loop callbacks to wake its
        caller."""
        waiter: asyncio.Future[None] = self.manager.loop.create_future()
        if self.settled:
            waiter.set_result(None)
        elif self.waiters is None:
            self.waiters = [waiter]
        else:
            self.waiters.append(waiter)
        return waiter

    def abandon(self, reason: str) -> None:
        """End a run that cannot be resumed as FAILED, saying why."""
        self.end_unstarted(RunStatus.FAILED, "ServerRestartedError", reason)
        self._log_run(logging.WARNING, "run_abandoned", reason=reason)

    def end_unstarted(self, status: RunStatus, error_type: str, reason: str) -> None:
        """End a run the engine is not running (queued, or not resumable) with ``status``."""
        record = self.run
        record.status = convert.STATUS_TO_PB[status]
        convert.stamp(record.ended_at)
        record.error.CopyFrom(pb.RunError(type=error_type, message=reason))
        data = {"type": error_type, "message": reason, "step": ""}
        self._emit(convert.TERMINAL_KIND[status], error_type, None, data_field(data), terminal=True)
        self._release(str(status))  # the StrEnum's value, without its slow .value
