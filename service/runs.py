"""The run manager: starts runs on the engine, and reads and controls them."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from engine import (
    Context,
    EventValidationError,
    RunStatus,
    StartEvent,
    Workflow,
)
from engine.events import build_event
from engine.ids import new_run_id

from . import convert, logs, wire
from ._pb import workflow_pb2 as pb
from .active_run import ActiveRun
from .checkpoints import CHECKPOINT_DELAY, CheckpointSchedule
from .concurrency import CONCURRENCY_KEY_LABEL, KeyLimiter, Overflow
from .errors import (
    EventTypeUnknownError,
    InvalidArgumentError,
    InvalidDataError,
    KeyBusyError,
    PayloadTooLargeError,
    RunAlreadyExistsError,
    RunEndedError,
    RunNotFoundError,
    ShuttingDownError,
    TooManyRunsError,
    WorkflowNotFoundError,
)
from .observer import ObserveRun
from .store import RunQuery, Store, StoredRun
from .wire import LoggedEvent

log = logging.getLogger("service.runs")

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


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
        max_runs_per_key: int | None = None,
        key_overflow: Overflow = Overflow.QUEUE,
        observers: Sequence[ObserveRun] = (),
        max_result_bytes: int = 4 * 1024 * 1024,
        checkpoint_delay: float = CHECKPOINT_DELAY,
    ) -> None:
        """``checkpoint_delay``: seconds from a step's completion to the durable store's
        checkpoint of its run (see service.checkpoints)."""
        self.workflows = workflows
        self.observers = tuple(observers)  # metrics' and tracing's; none when both are off
        self.max_payload_bytes = max_payload_bytes
        self.max_result_bytes = max_result_bytes
        self.store = store
        self.max_concurrent_runs = max_concurrent_runs
        self.default_timeout = default_timeout
        self.retention = retention
        self.max_ended_runs = max_ended_runs
        self.active: dict[str, ActiveRun] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # see loop
        self.checkpoints = CheckpointSchedule(self.active, checkpoint_delay)
        # Runs sharing a concurrency_key label: at most max_runs_per_key of them running.
        self.keys: KeyLimiter[ActiveRun] | None = (
            KeyLimiter(max_runs_per_key) if max_runs_per_key else None
        )
        self.key_overflow = Overflow(key_overflow)
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
        self._check_size(field, message.ByteSize())

    def _check_size(self, field: str, size: int) -> None:
        if size > self.max_payload_bytes:
            raise PayloadTooLargeError(field, size, self.max_payload_bytes)

    async def start(self, req: pb.RunWorkflowRequest, trace_id: str | None = None) -> pb.Run:
        """Start a run (or return the one ``req.run_id`` already names); ``trace_id`` is
        the caller's, for log lines."""
        # Each field is read once: every read of a protobuf field makes a new Python object.
        name = req.workflow
        wf = self.workflow(name)
        request_input = req.input
        # The input serialized once: its size is checked, it makes the fingerprint and, as
        # it is, the RUN_STARTED event's data.
        fingerprint, raw_input = _fingerprint(name, request_input)
        self._check_size("input", len(raw_input))
        timeout = self._timeout(req)
        data = convert.struct_to_dict(request_input)
        run_id = req.run_id
        if run_id:
            if not _RUN_ID.match(run_id):
                raise InvalidArgumentError(
                    "run_id",
                    "use 1-128 letters, digits, '.', '_', ':' or '-', "
                    "starting with a letter or digit",
                )
            existing = await self.store.get_run(run_id)
            if existing is not None:
                return self._same_run(existing, fingerprint, name, data)
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
            raise InvalidDataError("input", e, reason="INPUT_INVALID", workflow=name) from e
        labels = req.labels
        key = None if self.keys is None else self._concurrency_key(labels)
        slot = key is not None and self.keys is not None and self.keys.try_acquire(key)
        if key is not None and not slot and self.key_overflow is Overflow.REJECT:
            raise KeyBusyError(key, self.keys.limit if self.keys else 0)
        run = pb.Run(run_id=run_id or new_run_id(), workflow=name, status=pb.RUN_STATUS_PENDING)
        # From the bytes at hand: half the cost of copying the request's Struct.
        run.input.MergeFromString(raw_input)
        if labels:  # an empty map costs as much to pass as the rest of the Run
            run.labels.update(labels)
        convert.stamp(run.created_at)
        if timeout is not None:
            run.timeout.FromNanoseconds(int(timeout * 1e9))
        try:
            raced = await self.store.insert_run(run, fingerprint)
        except BaseException:
            if slot and key is not None:
                self._pass_slot(key)
            raise
        if raced is not None:
            if slot and key is not None:
                self._pass_slot(key)
            return self._same_run(raced, fingerprint, name, data)
        active = ActiveRun(
            self, run, data, trace_id=trace_id, input_field=wire.struct_field(raw_input)
        )
        active.key = key
        self.active[active.run_id] = active
        if key is None or slot:
            active.slot = slot
            self._launch(active, wf, start_event, None, timeout)
        else:
            assert self.keys is not None
            active.queued = []
            ahead = self.keys.wait(key, active)
            logs.event(
                log,
                logging.INFO,
                "run_queued",
                run_id=active.run_id,
                workflow=name,
                concurrency_key=key,
                ahead=ahead,
                trace_id=trace_id,
            )
        return run

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop runs go on, looked up once: on Python 3.11 each lookup of the running
        loop asks the OS for the process id, a system call per run or two."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _concurrency_key(self, labels: Mapping[str, str]) -> str | None:
        """The run's concurrency_key, when per-key limits are on and it has one."""
        if self.keys is None:
            return None
        return labels.get(CONCURRENCY_KEY_LABEL) or None

    def _launch(
        self,
        active: ActiveRun,
        wf: Workflow,
        start_event: StartEvent | None,
        ctx: Context | None,
        timeout: float | None,
    ) -> None:
        """Hand the run to the engine, with the events sent to it while it waited."""
        pending, active.queued = active.queued, None
        active.handler = wf.start_run(
            start_event,
            ctx=ctx,
            run_id=active.run_id,
            listener=active,
            timeout=timeout,
            retain_stream=False,
            loop=self.loop,
        )
        if pending:
            for type_name, data in pending:
                active.handler.ctx.send_event(wf.build_event(type_name, data))
            if self.store.durable:
                active.save_checkpoint()

    def _pass_slot(self, key: str) -> None:
        """A slot of ``key`` came free: start the run that waited longest for it."""
        assert self.keys is not None
        nxt = self.keys.release(key)
        if nxt is None:
            return
        nxt.slot = True
        run = nxt.run
        wf = self.workflows[run.workflow]
        try:
            self._launch(nxt, wf, wf.build_start_event(nxt.input), None, _stored_timeout(run))
        except Exception as e:
            logs.event(log, logging.ERROR, "queued_run_failed", run_id=run.run_id, exc_info=True)
            nxt.end_unstarted(RunStatus.FAILED, type(e).__name__, f"the run could not start: {e}")

    @staticmethod
    def _same_run(
        existing: StoredRun, fingerprint: str, workflow: str, data: dict[str, Any]
    ) -> pb.Run:
        """The run ``existing`` if the request asks for the same start (``workflow``, with
        ``data`` as input), or ALREADY_EXISTS."""
        stored = existing.fingerprint
        if stored != fingerprint and stored != _json_fingerprint(workflow, data):
            raise RunAlreadyExistsError(
                f"run_id '{existing.run.run_id}' already names a run of workflow "
                f"'{existing.run.workflow}' with a different input; choose a new run_id "
                "or repeat the original request exactly",
                metadata={"run_id": existing.run.run_id, "workflow": existing.run.workflow},
            )
        return existing.run

    def ended(self, active: ActiveRun) -> None:
        self.active.pop(active.run.run_id, None)
        if active.slot and active.key is not None:
            active.slot = False
            self._pass_slot(active.key)

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
            run = await self.get(run_id)
            await self.store.sync()  # it may have ended a moment ago
            return run
        await active.until_ended()  # and durable: answer only what a crash cannot take back
        self.store.check()
        return active.run

    async def cancel(self, run_id: str) -> pb.Run:
        run = await self.get(run_id)
        active = self.active.get(run_id)
        if active is not None and active.queued is not None and active.key is not None:
            # Still waiting for a slot of its key: it leaves the queue and never starts.
            assert self.keys is not None
            self.keys.remove(active.key, active)
            active.end_unstarted(
                RunStatus.CANCELLED,
                "WorkflowCancelledError",
                "the run was cancelled while it waited for a slot of "
                f"{CONCURRENCY_KEY_LABEL} '{active.key}'",
            )
            await self.store.sync()
            return active.run
        if run.status in convert.ENDED_STATUSES or active is None or active.handler is None:
            raise RunEndedError(
                f"run '{run_id}' already ended as {_status_name(run.status)}; "
                "only a run that is still going can be cancelled",
                metadata={"run_id": run_id, "status": _status_name(run.status)},
            )
        active.handler.cancel_run()
        await active.until_ended()
        self.store.check()
        return run

    async def send_event(self, run_id: str, type_name: str, data: dict[str, Any]) -> pb.Run:
        run = await self.get(run_id)
        active = self.active.get(run_id)
        going = active is not None and (active.handler is not None or active.queued is not None)
        if run.status in convert.ENDED_STATUSES or active is None or not going:
            raise RunEndedError(
                f"run '{run_id}' already ended as {_status_name(run.status)}; "
                "it accepts no more events",
                metadata={"run_id": run_id, "status": _status_name(run.status)},
            )
        wf = self.workflows[run.workflow]
        accepted = {t.__name__: t for t in wf.external_event_types()}
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
        if active.queued is not None:
            # Not started yet (it waits for a slot of its key): kept for when it starts.
            active.queued.append((type_name, data))
            if self.store.durable:
                self.store.save_checkpoint(run_id, _queued_checkpoint(active.queued))
                await self.store.sync()
            return run
        assert active.handler is not None
        active.handler.ctx.send_event(event)
        if self.store.durable:
            # Acknowledge only once the event is in a checkpoint: it must survive a crash.
            active.save_checkpoint()
            await self.store.sync()
        return run

    async def list_runs(
        self, req: pb.ListRunsRequest, workflows: frozenset[str] | None = None
    ) -> pb.ListRunsResponse:
        """Runs matching ``req``, of ``workflows`` only when given."""
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
            workflows=workflows,
        )
        runs, cursor = await self.store.list_runs(query)
        token = _encode_token(cursor) if cursor is not None else ""
        return pb.ListRunsResponse(runs=runs, next_page_token=token)

    async def follow(self, run_id: str, after: int) -> AsyncIterator[LoggedEvent]:
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
        """Resume every run the store says was going; end the ones that cannot go on.

        Runs that had started take their key's slots first, whatever the limit; runs that
        were waiting for a slot wait again, in the order they arrived."""
        unfinished = await self.store.unfinished_runs()
        began = [u for u in unfinished if u.stored.run.status != pb.RUN_STATUS_PENDING]
        waiting = [u for u in unfinished if u.stored.run.status == pb.RUN_STATUS_PENDING]
        for u in began + waiting:
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
            checkpoint = u.checkpoint
            queued = _queued_events(checkpoint)
            if queued is not None:
                checkpoint = None
            active.queued = queued
            active.key = key = self._concurrency_key(run.labels)
            if key is not None:
                assert self.keys is not None
                if run.status != pb.RUN_STATUS_PENDING:
                    self.keys.force_acquire(key)
                elif not self.keys.try_acquire(key):
                    active.queued = queued or []
                    self.keys.wait(key, active)
                    continue
                active.slot = True
            try:
                self._resume(wf, active, checkpoint)
            except Exception as e:
                active.abandon(f"the server restarted and could not resume the run: {e}")

    def _resume(self, wf: Workflow, active: ActiveRun, checkpoint: str | None) -> None:
        run = active.run
        timeout = _stored_timeout(run)
        if checkpoint:
            ctx = Context.from_dict(wf, json.loads(checkpoint))
            self._launch(active, wf, None, ctx, timeout)
        else:
            # It never completed a step: start it again; invocation numbers come out the same.
            self._launch(active, wf, wf.build_start_event(active.input), None, timeout)

    # ---- retention --------------------------------------------------------------------------

    def start_pruning(self, interval: float) -> None:
        if self.retention is not None or self.max_ended_runs is not None:
            self._pruner = asyncio.get_running_loop().create_task(self._prune_forever(interval))

    async def _prune_forever(self, interval: float) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                logs.event(log, logging.ERROR, "prune_failed", exc_info=True)
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
            logs.event(log, logging.INFO, "pruned", runs=gone)
        return gone

    # ---- shutdown ---------------------------------------------------------------------------

    async def shutdown(self, grace: float) -> None:
        """Take no new runs, let running ones finish within ``grace``, then cancel the rest."""
        self.accepting = False
        if self._pruner is not None:
            self._pruner.cancel()
        pending = [a.until_ended() for a in self.active.values()]
        if pending:
            logs.event(log, logging.INFO, "draining", runs=len(pending), grace_s=grace)
            await asyncio.wait(pending, timeout=grace)
        if self.keys is not None:
            self.keys.waiting.clear()  # no queued run starts from here on
        rest = list(self.active.values())
        for active in rest:
            if active.handler is None:
                if active.queued is not None:
                    self._stop_queued(active)
                continue
            if self.store.durable and type(active.handler.workflow).durable:
                # Leave it to the next start, from its last checkpoint.
                active.save_checkpoint()
                active.detached = True
            active.handler.cancel_run()
        self.checkpoints.cancel()  # the runs left have theirs; the others ended
        if rest:
            await asyncio.wait([a.until_ended() for a in rest], timeout=5)
        self.store.interrupt_followers(
            ShuttingDownError("the server is restarting and the run will go on after it")
        )
        await self.store.sync()

    def _stop_queued(self, active: ActiveRun) -> None:
        """At shutdown, a run still waiting for a slot: kept for the next start if it can be,
        otherwise cancelled."""
        if self.store.durable and type(self.workflows[active.run.workflow]).durable:
            active.detached = True  # stays PENDING in the store, queued events with it
            active._release(None)
        else:
            active.end_unstarted(
                RunStatus.CANCELLED,
                "WorkflowCancelledError",
                "the server shut down before the run got a slot of its "
                f"{CONCURRENCY_KEY_LABEL} '{active.key}'",
            )


def _stored_timeout(run: pb.Run) -> float | None:
    """What is left of the run's timeout; queued time does not count."""
    if not run.HasField("timeout"):
        return None
    began = run.started_at.ToNanoseconds() if run.HasField("started_at") else 0
    elapsed = (time.time_ns() - began) / 1e9 if began else 0.0
    return max(run.timeout.ToNanoseconds() / 1e9 - elapsed, 0.001)


def _queued_checkpoint(events: list[tuple[str, dict[str, Any]]]) -> str:
    """What a run that waits for a slot keeps in its checkpoint: the events sent to it."""
    return json.dumps({"queued": [[t, d] for t, d in events]}, separators=(",", ":"))


def _queued_events(checkpoint: str | None) -> list[tuple[str, dict[str, Any]]] | None:
    if not checkpoint or not checkpoint.startswith('{"queued"'):
        return None
    return [(t, d) for t, d in json.loads(checkpoint)["queued"]]


def _status_name(status: int) -> str:
    return pb.RunStatus.Name(status).removeprefix("RUN_STATUS_")  # type: ignore[arg-type]


def _fingerprint(workflow: str, input: struct_pb2.Struct) -> tuple[str, bytes]:
    """What makes two starts of a run the same, the workflow and the input, and the input's
    serialization it is made from: deterministic, which writes map keys sorted, so equal
    inputs give equal bytes whatever order their keys came in."""
    raw_input = input.SerializeToString(deterministic=True)
    return workflow + "\n" + raw_input.hex(), raw_input


def _json_fingerprint(workflow: str, data: dict[str, Any]) -> str:
    """The fingerprint of runs stored by earlier versions: the input as canonical JSON.
    Hex digits never start with '{', so the two kinds cannot be confused."""
    return workflow + "\n" + json.dumps(data, sort_keys=True, separators=(",", ":"))


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
