"""The run manager: starts runs on the engine, records what they do, and controls them."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from engine import (
    CheckpointError,
    Context,
    Event,
    EventValidationError,
    InputRequiredEvent,
    RunListener,
    RunStatus,
    StopEvent,
    Workflow,
    WorkflowHandler,
)
from engine.events import build_event

from . import convert
from ._pb import workflow_pb2 as pb
from .errors import (
    EventTypeUnknownError,
    InvalidArgumentError,
    InvalidDataError,
    PayloadTooLargeError,
    ResultTooLargeError,
    RunAlreadyExistsError,
    RunEndedError,
    RunNotFoundError,
    ShuttingDownError,
    TooManyRunsError,
    WorkflowNotFoundError,
)
from .store import RunQuery, Store, StoredRun

log = logging.getLogger("service.runs")

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


class ActiveRun(RunListener):
    """One run in flight: hears the engine and turns what it hears into the event log."""

    __slots__ = (
        "began",
        "checkpoint_due",
        "detached",
        "done",
        "handler",
        "input",
        "manager",
        "resumed",
        "run",
        "seen",
        "store",
    )

    def __init__(
        self,
        manager: RunManager,
        run: pb.Run,
        input: dict[str, Any],
        resumed: bool = False,
        seen: set[tuple[int, int]] | None = None,
    ) -> None:
        self.manager = manager
        self.input = input
        self.store = manager.store
        self.run = run
        self.handler: WorkflowHandler | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.began = time.perf_counter()
        self.resumed = resumed
        # (invocation, index) of stream events already in the log before a restart: a
        # re-run step writing them again must not repeat them to subscribers.
        self.seen = seen or None
        self.checkpoint_due = False
        self.detached = False  # left to be resumed by the next server; record nothing more

    def _emit(
        self,
        kind: pb.EventKind.ValueType,
        type_name: str,
        step: str | None,
        data: dict[str, Any] | None = None,
        terminal: bool = False,
        key: tuple[int, int] = (0, 0),
    ) -> None:
        if self.detached:
            return
        run = self.run
        run.last_sequence += 1
        event = pb.WorkflowEvent(
            run_id=run.run_id,
            sequence=run.last_sequence,
            kind=kind,
            type=type_name,
            step=step or "",
            time=convert.now(),
        )
        if data:
            event.data.update(data)
        if terminal:
            self.store.update_run(run)  # the final record, with its last sequence
        self.store.append_event(event, terminal, key)

    def run_started(self, run: WorkflowHandler, start_event: Event | None) -> None:
        self.run.status = pb.RUN_STATUS_RUNNING
        if self.resumed and self.run.last_sequence:
            self.store.update_run(self.run)
            log.info(
                "event=run_resumed run_id=%s workflow=%s after_sequence=%d",
                self.run.run_id,
                self.run.workflow,
                self.run.last_sequence,
            )
            return
        self.run.started_at.CopyFrom(convert.now())
        self.store.update_run(self.run)
        self._emit(pb.EVENT_KIND_RUN_STARTED, type(start_event).__name__, None, self.input)
        log.info("event=run_started run_id=%s workflow=%s", self.run.run_id, self.run.workflow)

    def step_started(
        self, run: WorkflowHandler, step: str, invocation: int, attempt: int, event: Event
    ) -> None:
        data = {"attempt": attempt, "invocation": invocation}
        self._emit(pb.EVENT_KIND_STEP_STARTED, type(event).__name__, step, data)

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
        data: dict[str, Any] = {
            "attempt": attempt,
            "invocation": invocation,
            "duration_ms": round(duration * 1000, 3),
        }
        if error is not None:
            data["error"] = f"{type(error).__name__}: {error}"
        type_name = type(result).__name__ if result is not None else ""
        self._emit(pb.EVENT_KIND_STEP_FINISHED, type_name, step, data)

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
        data = event.model_dump(mode="json", fallback=repr)
        self._emit(kind, type(event).__name__, step, data, key=key)

    def step_completed(self, run: WorkflowHandler, step: str, invocation: int) -> None:
        # One checkpoint per run per loop turn, however many of its steps completed in it.
        if self.store.durable and not self.checkpoint_due:
            self.checkpoint_due = True
            asyncio.get_running_loop().call_soon(self.save_checkpoint)

    def save_checkpoint(self) -> None:
        self.checkpoint_due = False
        handler = self.handler
        if handler is None or handler.done() or self.detached:
            return
        try:
            text = json.dumps(handler.ctx.to_dict(), separators=(",", ":"))
        except (CheckpointError, TypeError, ValueError) as e:
            log.error(
                "event=checkpoint_failed run_id=%s workflow=%s error=%s",
                self.run.run_id,
                self.run.workflow,
                json.dumps(str(e)),
            )
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
            self._release()
            return
        record = self.run
        data: dict[str, Any]
        if error is None:
            result = convert.jsonable(result)
            value = convert.to_value(result)
            if value.ByteSize() > self.manager.max_result_bytes:
                # Larger results would make every read of the run fail at the message limit.
                status = RunStatus.FAILED
                error = ResultTooLargeError(value.ByteSize(), self.manager.max_result_bytes)
            else:
                record.result.CopyFrom(value)
        record.status = convert.STATUS_TO_PB[status]
        record.ended_at.CopyFrom(convert.now())
        if error is None:
            data = {"result": result}
            type_name = "StopEvent"
        else:
            step = getattr(error, "step", "") or ""
            record.error.CopyFrom(
                pb.RunError(type=type(error).__name__, message=str(error), step=step)
            )
            data = {"type": type(error).__name__, "message": str(error), "step": step}
            type_name = type(error).__name__
        self._emit(convert.TERMINAL_KIND[status], type_name, None, data, terminal=True)
        self._release()
        log.info(
            "event=run_ended run_id=%s workflow=%s status=%s duration_ms=%.1f%s",
            record.run_id,
            record.workflow,
            status.value,
            (time.perf_counter() - self.began) * 1000,
            f" error={json.dumps(str(error))}" if error is not None else "",
        )

    def _release(self) -> None:
        self.manager.ended(self)
        if not self.done.done():
            self.done.set_result(None)

    def abandon(self, reason: str) -> None:
        """End a run that cannot be resumed as FAILED, saying why."""
        record = self.run
        record.status = pb.RUN_STATUS_FAILED
        record.ended_at.CopyFrom(convert.now())
        record.error.CopyFrom(pb.RunError(type="ServerRestartedError", message=reason))
        data = {"type": "ServerRestartedError", "message": reason, "step": ""}
        self._emit(pb.EVENT_KIND_RUN_FAILED, "ServerRestartedError", None, data, terminal=True)
        self._release()
        log.warning(
            "event=run_abandoned run_id=%s workflow=%s reason=%s",
            record.run_id,
            record.workflow,
            json.dumps(reason),
        )


class RunManager:
    """Starts, tracks and controls runs; the RPC handlers call only this."""

    def __init__(
        self,
        workflows: dict[str, Workflow],
        store: Store,
        *,
        max_concurrent_runs: int = 50_000,
        default_timeout: float | None = None,
        retention: float | None = None,
        max_ended_runs: int | None = None,
        max_payload_bytes: int = 1024 * 1024,
        max_result_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.workflows = workflows
        self.max_payload_bytes = max_payload_bytes
        self.max_result_bytes = max_result_bytes
        self.store = store
        self.max_concurrent_runs = max_concurrent_runs
        self.default_timeout = default_timeout
        self.retention = retention
        self.max_ended_runs = max_ended_runs
        self.active: dict[str, ActiveRun] = {}
        self.accepting = True
        self._pruner: asyncio.Task[None] | None = None

    # ---- starting -------------------------------------------------------------------------

    def workflow(self, name: str) -> Workflow:
        wf = self.workflows.get(name)
        if wf is None:
            if not name:
                raise InvalidArgumentError("workflow", "the workflow name is required")
            raise WorkflowNotFoundError(name, list(self.workflows))
        return wf

    def _timeout(self, req: pb.RunWorkflowRequest) -> float | None:
        if not req.HasField("timeout"):
            return self.default_timeout
        seconds = req.timeout.seconds + req.timeout.nanos / 1e9
        if seconds <= 0:
            raise InvalidArgumentError(
                "timeout",
                f"must be a positive duration, got {seconds:g}s "
                "(leave it unset for the server's default)",
            )
        return seconds

    def check_payload(self, field: str, message: Message) -> None:
        size = message.ByteSize()
        if size > self.max_payload_bytes:
            raise PayloadTooLargeError(field, size, self.max_payload_bytes)

    async def start(self, req: pb.RunWorkflowRequest) -> pb.Run:
        wf = self.workflow(req.workflow)
        self.check_payload("input", req.input)
        timeout = self._timeout(req)
        data = convert.struct_to_dict(req.input)
        fingerprint = req.workflow + "\n" + json.dumps(data, sort_keys=True, separators=(",", ":"))
        if req.run_id:
            if not _RUN_ID.match(req.run_id):
                raise InvalidArgumentError(
                    "run_id",
                    "use 1-128 letters, digits, '.', '_', ':' or '-', "
                    "starting with a letter or digit",
                )
            existing = await self.store.get_run(req.run_id)
            if existing is not None:
                return self._same_run(existing, fingerprint)
        if not self.accepting:
            raise ShuttingDownError("the server is shutting down and takes no new runs")
        if len(self.active) >= self.max_concurrent_runs:
            raise TooManyRunsError(
                f"the server is running its maximum of {self.max_concurrent_runs} concurrent "
                "runs; retry later",
                metadata={"limit": self.max_concurrent_runs},
            )
        try:
            start_event = wf.build_start_event(data)
        except EventValidationError as e:
            raise InvalidDataError("input", e, reason="INPUT_INVALID", workflow=req.workflow) from e
        run = pb.Run(
            run_id=req.run_id or uuid.uuid4().hex,
            workflow=req.workflow,
            status=pb.RUN_STATUS_PENDING,
            input=req.input,
            created_at=convert.now(),
            labels=req.labels,
        )
        if timeout is not None:
            run.timeout.FromNanoseconds(int(timeout * 1e9))
        raced = await self.store.insert_run(run, fingerprint)
        if raced is not None:
            return self._same_run(raced, fingerprint)
        active = ActiveRun(self, run, data)
        self.active[run.run_id] = active
        active.handler = wf.start_run(
            start_event,
            run_id=run.run_id,
            listener=active,
            timeout=timeout,
            retain_stream=False,
        )
        # The listener hears how the run ended; reading the outcome here keeps asyncio from
        # logging a failed run's error as "never retrieved".
        active.handler.add_done_callback(_consume_outcome)
        return run

    @staticmethod
    def _same_run(existing: StoredRun, fingerprint: str) -> pb.Run:
        if existing.fingerprint != fingerprint:
            raise RunAlreadyExistsError(
                f"run_id '{existing.run.run_id}' already names a run of workflow "
                f"'{existing.run.workflow}' with a different input; choose a new run_id "
                "or repeat the original request exactly",
                metadata={"run_id": existing.run.run_id, "workflow": existing.run.workflow},
            )
        return existing.run

    def ended(self, active: ActiveRun) -> None:
        self.active.pop(active.run.run_id, None)

    # ---- reading and control ----------------------------------------------------------------

    async def get(self, run_id: str) -> pb.Run:
        if not run_id:
            raise InvalidArgumentError("run_id", "required")
        stored = await self.store.get_run(run_id)
        if stored is None:
            raise RunNotFoundError(run_id)
        return stored.run

    async def wait(self, run_id: str) -> pb.Run:
        """Wait for the run to end without tying its fate to the caller's."""
        active = self.active.get(run_id)
        if active is None:
            return await self.get(run_id)
        await asyncio.shield(active.done)
        await self.store.sync()  # answer only with what a crash cannot take back
        return active.run

    async def cancel(self, run_id: str) -> pb.Run:
        run = await self.get(run_id)
        active = self.active.get(run_id)
        if run.status in convert.ENDED_STATUSES or active is None or active.handler is None:
            raise RunEndedError(
                f"run '{run_id}' already ended as {_status_name(run.status)}; "
                "only a run that is still going can be cancelled",
                metadata={"run_id": run_id, "status": _status_name(run.status)},
            )
        active.handler.cancel_run()
        await asyncio.shield(active.done)
        await self.store.sync()
        return run

    async def send_event(self, run_id: str, type_name: str, data: dict[str, Any]) -> pb.Run:
        run = await self.get(run_id)
        active = self.active.get(run_id)
        if run.status in convert.ENDED_STATUSES or active is None or active.handler is None:
            raise RunEndedError(
                f"run '{run_id}' already ended as {_status_name(run.status)}; "
                "it accepts no more events",
                metadata={"run_id": run_id, "status": _status_name(run.status)},
            )
        accepted = {t.__name__: t for t in active.handler.workflow.external_event_types()}
        cls = accepted.get(type_name)
        if cls is None:
            names = ", ".join(sorted(accepted)) or "none"
            raise EventTypeUnknownError(
                "type",
                f"workflow '{run.workflow}' accepts no event '{type_name}' from outside "
                f"(it accepts: {names})",
                metadata={"run_id": run_id, "workflow": run.workflow, "type": type_name},
            )
        try:
            event = build_event(cls, data)
        except EventValidationError as e:
            raise InvalidDataError("data", e, reason="EVENT_INVALID", run_id=run_id) from e
        active.handler.ctx.send_event(event)
        if self.store.durable:
            # Acknowledge only once the event is in a checkpoint: it must survive a crash.
            active.save_checkpoint()
            await self.store.sync()
        return run

    async def list_runs(self, req: pb.ListRunsRequest) -> pb.ListRunsResponse:
        if req.page_size < 0:
            raise InvalidArgumentError("page_size", "must not be negative")
        if req.workflow and req.workflow not in self.workflows:
            raise WorkflowNotFoundError(req.workflow, list(self.workflows))
        query = RunQuery(
            workflow=req.workflow,
            statuses=frozenset(req.statuses),
            labels=dict(req.labels),
            page_size=min(req.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            before_ordinal=_decode_token(req.page_token) if req.page_token else None,
        )
        runs, cursor = await self.store.list_runs(query)
        token = _encode_token(cursor) if cursor is not None else ""
        return pb.ListRunsResponse(runs=runs, next_page_token=token)

    async def follow(self, run_id: str, after: int) -> AsyncIterator[pb.WorkflowEvent]:
        await self.get(run_id)
        try:
            async for event in self.store.follow(run_id, after):
                after = event.sequence
                yield event
        except ShuttingDownError:
            raise ShuttingDownError(
                "the server is restarting and the run will go on after it; reconnect and "
                f"resume with after_sequence={after}",
                metadata={"run_id": run_id, "after_sequence": after},
            ) from None

    # ---- resuming after a restart ---------------------------------------------------------

    async def recover(self) -> None:
        """Resume every run the store says was going; end the ones that cannot go on."""
        for u in await self.store.unfinished_runs():
            run = u.stored.run
            active = ActiveRun(
                self, run, convert.struct_to_dict(run.input), resumed=True, seen=u.stream_keys
            )
            self.active[run.run_id] = active
            wf = self.workflows.get(run.workflow)
            if wf is None:
                active.abandon(
                    f"the server restarted and no longer serves workflow '{run.workflow}'"
                )
                continue
            if not type(wf).durable:
                active.abandon(
                    "the server restarted while the run was going, and workflow "
                    f"'{run.workflow}' is not durable (durable=False), so it was not resumed"
                )
                continue
            try:
                active.handler = self._resume(wf, active, u.checkpoint)
            except Exception as e:
                active.abandon(f"the server restarted and could not resume the run: {e}")
                continue
            active.handler.add_done_callback(_consume_outcome)

    def _resume(self, wf: Workflow, active: ActiveRun, checkpoint: str | None) -> WorkflowHandler:
        run = active.run
        timeout: float | None = None
        if run.HasField("timeout"):
            began = run.started_at.ToNanoseconds() if run.HasField("started_at") else 0
            elapsed = (time.time_ns() - began) / 1e9 if began else 0.0
            timeout = max(run.timeout.ToNanoseconds() / 1e9 - elapsed, 0.001)
        if checkpoint:
            ctx = Context.from_dict(wf, json.loads(checkpoint))
            return wf.start_run(
                ctx=ctx, run_id=run.run_id, listener=active, timeout=timeout, retain_stream=False
            )
        # It never completed a step: start it again; invocation numbers come out the same.
        return wf.start_run(
            wf.build_start_event(active.input),
            run_id=run.run_id,
            listener=active,
            timeout=timeout,
            retain_stream=False,
        )

    # ---- retention --------------------------------------------------------------------------

    def start_pruning(self, interval: float) -> None:
        if self.retention is not None or self.max_ended_runs is not None:
            self._pruner = asyncio.get_running_loop().create_task(self._prune_forever(interval))

    async def _prune_forever(self, interval: float) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("event=prune_failed")
            await asyncio.sleep(interval)

    async def prune(self, batch: int = 500) -> int:
        """Delete ended runs past the retention age or count, a small batch at a time so
        requests keep flowing in between."""
        gone = 0
        while True:
            cutoff = None
            if self.retention is not None:
                cutoff = time.time_ns() - int(self.retention * 1e9)
            n = await self.store.prune(cutoff, self.max_ended_runs, batch)
            gone += n
            if n < batch:
                break
            await asyncio.sleep(0)
        if gone:
            log.info("event=pruned runs=%d", gone)
        return gone

    # ---- shutdown ---------------------------------------------------------------------------

    async def shutdown(self, grace: float) -> None:
        """Take no new runs, let running ones finish within ``grace``, then cancel the rest."""
        self.accepting = False
        if self._pruner is not None:
            self._pruner.cancel()
        pending = [a.done for a in self.active.values()]
        if pending:
            log.info("event=draining runs=%d grace_s=%g", len(pending), grace)
            await asyncio.wait(pending, timeout=grace)
        rest = list(self.active.values())
        for active in rest:
            if active.handler is None:
                continue
            if self.store.durable and type(active.handler.workflow).durable:
                # Leave it to the next start, from its last checkpoint.
                active.save_checkpoint()
                active.detached = True
            active.handler.cancel_run()
        if rest:
            await asyncio.wait([a.done for a in rest], timeout=5)
        self.store.interrupt_followers(
            ShuttingDownError("the server is restarting and the run will go on after it")
        )
        await self.store.sync()


def _status_name(status: int) -> str:
    return pb.RunStatus.Name(status).removeprefix("RUN_STATUS_")  # type: ignore[arg-type]


def _consume_outcome(handler: asyncio.Future[Any]) -> None:
    if not handler.cancelled():
        handler.exception()


def _encode_token(ordinal: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": ordinal}).encode()).decode()


def _decode_token(token: str) -> int:
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))["before"]
        if not isinstance(value, int):
            raise TypeError
        return value
    except Exception:
        raise InvalidArgumentError(
            "page_token", "not a token this server issued; pass next_page_token unchanged"
        ) from None
