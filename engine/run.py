"""The run loop: how one run dispatches events to steps and drives them.

There is no driver task per run. Dispatching an event is a plain function call that either
starts a task for the step invocation (when the step has a free worker slot) or queues it;
when an invocation ends, its step's queue is served. The run's only running invocation,
ending, hands its task on to the first invocation it starts (any others get tasks of their
own), so a chain of steps runs in one task. A run therefore costs a task per step
invocation that runs beside others, one per chain, and a handful of small objects, and any
number of runs share one loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from .errors import (
    StepFailedError,
    StepTimeoutError,
    WaitForEventTimeoutError,
    WorkflowCancelledError,
    WorkflowNotRunningError,
    WorkflowRuntimeError,
    WorkflowStalledError,
    WorkflowTimeoutError,
)
from .events import Event, InputRequiredEvent, StopEvent
from .listener import RunListener
from .status import RunStatus

if TYPE_CHECKING:
    from .context import Context
    from .graph import StepGraph, StepSpec
    from .handler import WorkflowHandler
    from .workflow import Workflow

log = logging.getLogger("engine")

_MISSING: Any = object()

# Invocations one task runs back to back before it lets the loop run other work first.
CHAIN_TURNS = 8

# The step invocation the current task is running, if any. Set once per invocation task;
# it tells the context which step is calling it and links child runs to their parent.
CURRENT_WORK: contextvars.ContextVar[Work | None] = contextvars.ContextVar(
    "engine_current_work", default=None
)


class Work:
    """One step invocation: a step and the event it consumes."""

    __slots__ = ("event", "id", "received", "run", "spec", "started", "stream_count", "waits")

    def __init__(self, wid: int, spec: StepSpec, event: Event, run: Run) -> None:
        self.id = wid
        self.spec = spec
        self.event = event
        self.run = run
        self.started = False  # its task began running it
        self.stream_count = 0  # stream events written by the current attempt
        self.waits = 0  # wait_for_event calls made, for default waiter ids
        self.received: list[Event] = []  # events its waits consumed (kept for checkpoints)


class Waiter:
    __slots__ = ("event_type", "future", "id", "requirements", "work")

    def __init__(
        self,
        wid: str,
        event_type: type[Event],
        requirements: dict[str, Any] | None,
        future: asyncio.Future[Event],
        work: Work | None,
    ) -> None:
        self.id = wid
        self.event_type = event_type
        self.requirements = requirements
        self.future = future
        self.work = work

    def matches(self, ev: Event) -> bool:
        return _matches(ev, self.event_type, self.requirements)


def _matches(ev: Event, event_type: type[Event], requirements: dict[str, Any] | None) -> bool:
    if not isinstance(ev, event_type):
        return False
    if requirements:
        return all(getattr(ev, k, _MISSING) == v for k, v in requirements.items())
    return True


class Run:
    """The mutable state of one run and the functions that advance it."""

    __slots__ = (
        "active",
        "awaiting_input",
        "blocked",
        "children",
        "collect",
        "ctx",
        "ending",
        "finishing",
        "graph",
        "handler",
        "handoff",
        "in_flight",
        "last_work",
        "listener",
        "loop",
        "next_id",
        "on_sent",
        "parent",
        "pending",
        "queues",
        "run_id",
        "status",
        "stream",
        "stream_waiters",
        "tasks",
        "timeout",
        "timer",
        "unclaimed",
        "via_future",
        "waiters",
        "workflow",
    )

    def __init__(
        self,
        workflow: Workflow,
        graph: StepGraph,
        ctx: Context,
        run_id: str,
        listener: RunListener | None,
        timeout: float | None,
        retain_stream: bool,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.workflow = workflow
        self.graph = graph
        self.ctx = ctx
        self.run_id = run_id
        self.listener = listener
        # Most listeners ignore event_sent, and a dispatch is the engine's commonest call.
        self.on_sent = (
            listener.event_sent
            if listener is not None and type(listener).event_sent is not RunListener.event_sent
            else None
        )
        self.timeout = timeout
        self.loop = loop
        self.handler: WorkflowHandler = None  # type: ignore[assignment]  # set by start()
        self.status = RunStatus.PENDING
        self.tasks: dict[Work, asyncio.Task[None]] = {}  # each invocation's, until it ends
        self.finishing: Work | None = None  # the invocation whose task may take the next
        self.handoff: Work | None = None  # what it launched first: its task runs it next
        self.active: dict[str, int] = {}
        self.queues: dict[str, deque[Work]] = {}
        self.in_flight: dict[int, Work] = {}
        self.pending = 0  # invocations queued or in flight
        self.blocked = 0  # invocations suspended in wait_for_event
        self.awaiting_input = 0  # InputRequiredEvents not yet answered from outside
        self.unclaimed: list[Event] = []  # events no step or waiter has taken (yet)
        self.collect: dict[str, list[Event]] = {}
        self.waiters: list[Waiter] = []
        self.next_id = 1
        self.children: set[WorkflowHandler] | None = None
        self.parent: Run | None = None
        self.ending: tuple[RunStatus, Any, BaseException | None] | None = None
        self.via_future = False
        self.timer: asyncio.TimerHandle | None = None
        self.stream: list[Event] | None = [] if retain_stream else None
        self.stream_waiters: list[asyncio.Future[None]] = []
        self.last_work: tuple[str, str] | None = None

    # ---- dispatch -------------------------------------------------------------------------

    def dispatch(self, ev: Event, source: Work | None, step: str | None = None) -> None:
        """Route an event: to a waiting ``wait_for_event``, else to every accepting step."""
        if self.on_sent is not None:
            self.on_sent(self.handler, ev, source.spec.name if source else None)
        if self.waiters and self._deliver_to_waiter(ev):
            return
        if step is not None:
            self.enqueue(self.graph.steps[step], ev)
            return
        targets = self.graph.route(type(ev))
        if targets:
            for spec in targets:
                self.enqueue(spec, ev)
        elif isinstance(ev, StopEvent):
            self.succeed(ev, source)
        elif isinstance(ev, InputRequiredEvent):
            self.awaiting_input += 1
            self.write_stream(ev, source)
            if self.listener is not None:
                self.listener.input_required(self.handler, ev, source.spec.name if source else None)
        else:
            self.unclaimed.append(ev)

    def enqueue(self, spec: StepSpec, ev: Event, wid: int = 0) -> None:
        if not wid:
            wid = self.next_id
            self.next_id += 1
        work = Work(wid, spec, ev, self)
        self.pending += 1
        if self.active.get(spec.name, 0) < spec.config.num_workers:
            self._launch(work)
        else:
            queue = self.queues.get(spec.name)
            if queue is None:
                queue = self.queues[spec.name] = deque()
            queue.append(work)

    def _launch(self, work: Work) -> None:
        name = work.spec.name
        self.active[name] = self.active.get(name, 0) + 1
        self.in_flight[work.id] = work
        if self.finishing is not None and self.handoff is None and len(self.tasks) == 1:
            # The run's only task is ending: it runs this next (see _invoke). With other
            # tasks of the run ready, this waits its turn behind them in a task of its own.
            self.handoff = work
            return
        # Named after the run: a task left unnamed formats a "Task-N" name of its own.
        self.tasks[work] = self.loop.create_task(self._invoke(work), name=self.run_id)

    async def _invoke(self, work: Work) -> None:
        # The task's own bookkeeping happens here rather than in a done callback, which
        # would cost a loop callback per invocation. A task cancelled before it ran never
        # gets here: _end accounts for those.
        turns = 0
        while True:
            next_work = await self._run_work(work)
            if next_work is None:
                return
            # Carry on with the invocation this one started, as its own task would, but
            # without making one. Now and then the loop runs other work first, as it would
            # between tasks: a chain of steps that never wait cannot hold it for long.
            work = next_work
            turns += 1
            if turns % CHAIN_TURNS == 0:
                await asyncio.sleep(0)

    async def _run_work(self, work: Work) -> Work | None:
        """Run one invocation to its end; the invocation this task is to run next, if any."""
        work.started = True
        try:
            CURRENT_WORK.set(work)
            spec = work.spec
            listener = self.listener
            policy = spec.config.retry_policy
            attempt = 0
            began = first_began = 0.0
            while True:
                attempt += 1
                work.stream_count = 0
                if listener is not None or (policy is not None and attempt == 1):
                    began = time.perf_counter()
                    if attempt == 1:
                        first_began = began
                if listener is not None:
                    listener.step_started(self.handler, spec.name, work.id, attempt, work.event)
                try:
                    if spec.config.timeout is None:
                        result = await spec.invoke(self.workflow, self.ctx, work.event)
                    else:
                        result = await self._with_timeout(spec, work)
                except Exception as e:
                    if self.ending is not None:
                        return None  # the run is over; whatever the step raised no longer matters
                    if listener is not None:
                        duration = time.perf_counter() - began
                        listener.step_finished(
                            self.handler, spec.name, work.id, attempt, duration, None, e
                        )
                    delay = None
                    if policy is not None:
                        delay = policy.next(time.perf_counter() - first_began, attempt, e)
                    if delay is None:
                        self.fail(StepFailedError(spec.name, attempt, e), e)
                        return None
                    await asyncio.sleep(delay)
                    continue
                if listener is not None:
                    duration = time.perf_counter() - began
                    listener.step_finished(
                        self.handler, spec.name, work.id, attempt, duration, result, None
                    )
                break
            # What _work_done launches first is handed to this task (see _launch).
            self.finishing = work
            self._work_done(work, result)
        except Exception as err:
            if self.ending is None:
                log.error("engine error in run %s", self.run_id, exc_info=err)
                self.fail(WorkflowRuntimeError(f"internal engine error: {err!r}"), err)
        finally:
            task = self.tasks.pop(work)
            next_work = self.handoff
            self.finishing = self.handoff = None
            if next_work is not None and self.ending is None:
                self.tasks[next_work] = task
            else:
                next_work = None
                if self.ending is not None and not self.tasks:
                    self._finalize()
        return next_work

    async def _with_timeout(self, spec: StepSpec, work: Work) -> Any:
        timeout = spec.config.timeout
        assert timeout is not None
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await spec.invoke(self.workflow, self.ctx, work.event)
        except TimeoutError:
            if deadline.expired():
                raise StepTimeoutError(spec.name, timeout) from None
            raise

    def _work_done(self, work: Work, result: Any) -> None:
        name = work.spec.name
        self.active[name] -= 1
        del self.in_flight[work.id]
        self.pending -= 1
        if self.ending is not None:
            return
        self.last_work = (name, type(work.event).__name__)
        if result is not None:
            if not isinstance(result, Event):
                self.fail(
                    WorkflowRuntimeError(
                        f"step '{name}' returned {type(result).__name__}, not an Event"
                    )
                )
                return
            self.dispatch(result, work)
            if self.ending is not None:
                return
        queue = self.queues.get(name)
        if queue:
            self._launch(queue.popleft())
        elif self.pending == self.blocked:
            self.check_idle()
        if self.listener is not None and self.ending is None:
            self.listener.step_completed(self.handler, name, work.id)

    # ---- waiting for events ---------------------------------------------------------------

    def _deliver_to_waiter(self, ev: Event) -> bool:
        for i, waiter in enumerate(self.waiters):
            if waiter.matches(ev):
                del self.waiters[i]
                self.blocked -= 1
                if waiter.work is not None:
                    waiter.work.received.append(ev)
                waiter.future.set_result(ev)
                self._set_status(RunStatus.RUNNING)
                return True
        return False

    def take_unclaimed(
        self, event_type: type[Event], requirements: dict[str, Any] | None
    ) -> Event | None:
        for i, ev in enumerate(self.unclaimed):
            if _matches(ev, event_type, requirements):
                return self.unclaimed.pop(i)
        return None

    async def wait_for(
        self,
        work: Work | None,
        event_type: type[Event],
        waiter_event: Event | None,
        waiter_id: str | None,
        requirements: dict[str, Any] | None,
        timeout: float | None,
    ) -> Event:
        early = self.take_unclaimed(event_type, requirements)
        if early is not None:
            if work is not None:
                work.received.append(early)
            return early
        if waiter_id is None:
            if work is not None:
                work.waits += 1
                waiter_id = f"{work.id}:{work.waits}"
            else:
                waiter_id = f"outside:{id(event_type)}"
        future: asyncio.Future[Event] = self.loop.create_future()
        waiter = Waiter(waiter_id, event_type, requirements, future, work)
        self.waiters.append(waiter)
        self.blocked += 1
        if waiter_event is not None:
            self.write_stream(waiter_event, work)
            if isinstance(waiter_event, InputRequiredEvent) and self.listener is not None:
                step = work.spec.name if work else None
                self.listener.input_required(self.handler, waiter_event, step)
        if self.pending == self.blocked:
            self.check_idle()
        try:
            if timeout is None:
                return await future
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                raise WaitForEventTimeoutError(event_type.__name__, timeout) from None
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)
                self.blocked -= 1
                if self.ending is None and self.pending > self.blocked:
                    self._set_status(RunStatus.RUNNING)

    def send_from_outside(self, ev: Event, step: str | None) -> None:
        """An event from outside the run (``handler.ctx.send_event``)."""
        if self.ending is not None:
            raise WorkflowNotRunningError(
                f"run {self.run_id} has ended ({self.ending[0].value}); it accepts no events"
            )
        claimed_before = len(self.unclaimed)
        self.dispatch(ev, None, step)
        if len(self.unclaimed) == claimed_before and self.awaiting_input:
            self.awaiting_input -= 1
        if self.ending is None:
            if self.pending > self.blocked:
                self._set_status(RunStatus.RUNNING)
            else:
                self.check_idle()

    # ---- stream ---------------------------------------------------------------------------

    def write_stream(self, ev: Event, work: Work | None) -> None:
        if self.stream is not None:
            self.stream.append(ev)
            if self.stream_waiters:
                self._wake_stream()
        if self.listener is not None:
            index = 0
            if work is not None:
                work.stream_count += 1
                index = work.stream_count
            self.listener.stream_event(
                self.handler,
                ev,
                work.spec.name if work else None,
                work.id if work else 0,
                index,
            )

    def _wake_stream(self) -> None:
        waiters, self.stream_waiters = self.stream_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    # ---- status and ending ----------------------------------------------------------------

    def _set_status(self, status: RunStatus) -> None:
        if self.status is not status and self.ending is None:
            self.status = status
            if self.listener is not None:
                self.listener.status_changed(self.handler, status)

    def check_idle(self) -> None:
        """Nothing runnable is left: wait for outside input, or fail at once as stalled."""
        if self.ending is not None or self.pending != self.blocked:
            return
        if self.blocked or self.awaiting_input:
            self._set_status(RunStatus.WAITING_FOR_INPUT)
            return
        self.fail(self._stall_error())

    def _stall_error(self) -> WorkflowStalledError:
        names: list[str] = []
        parts: list[str] = []
        if self.unclaimed:
            names += [type(e).__name__ for e in self.unclaimed]
            parts.append(f"no step or waiter consumed {', '.join(names)}")
        for key, buf in self.collect.items():
            held = [type(e).__name__ for e in buf]
            names += held
            parts.append(
                f"collect_events in '{key}' holds {', '.join(held)} and is still waiting "
                "for the rest of the events it expects"
            )
        if not parts:
            if self.last_work is not None:
                step, ev = self.last_work
                parts.append(
                    f"step '{step}' consumed {ev} and returned None without sending any event on"
                )
                names.append(ev)
            else:
                parts.append("no step was started")
        return WorkflowStalledError(
            "workflow stalled: nothing is running, queued or awaited and no StopEvent was "
            "produced; " + "; ".join(parts),
            names,
        )

    def succeed(self, stop: StopEvent, source: Work | None) -> None:
        result = stop.result if type(stop) is StopEvent else stop
        self.write_stream(stop, source)
        self._end(RunStatus.SUCCEEDED, result, None)

    def fail(self, error: BaseException, cause: BaseException | None = None) -> None:
        if self.ending is not None:
            return
        if cause is not None:
            error.__cause__ = cause
        self._end(RunStatus.FAILED, None, error)

    def time_out(self) -> None:
        self.timer = None
        if self.ending is None:
            assert self.timeout is not None
            self._end(RunStatus.TIMED_OUT, None, WorkflowTimeoutError(self.timeout))

    def cancel(self, via_future: bool) -> None:
        if self.ending is None:
            self.via_future = via_future
            self._end(RunStatus.CANCELLED, None, WorkflowCancelledError("the run was cancelled"))

    def _end(self, status: RunStatus, result: Any, error: BaseException | None) -> None:
        self.ending = (status, result, error)
        self.status = status
        if self.listener is not None:
            self.listener.status_changed(self.handler, status)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.children:
            for child in list(self.children):
                child.cancel_run()
        for waiter in self.waiters:
            waiter.future.cancel()
        self.waiters.clear()
        # Our loop's current task, if any: _end may run while asyncio.run() shuts down.
        current = asyncio.current_task(self.loop)
        for work, task in list(self.tasks.items()):
            if task is not current:
                task.cancel()
                if not work.started:
                    del self.tasks[work]  # its coroutine will be closed without running
        if not self.tasks:
            self._finalize()

    def _finalize(self) -> None:
        assert self.ending is not None
        status, result, error = self.ending
        if self.stream is not None or self.stream_waiters:
            self._wake_stream()
        if self.listener is not None:
            try:
                self.listener.run_finished(self.handler, status, result, error)
            except Exception:
                log.exception("listener failed in run_finished for run %s", self.run_id)
        if self.parent is not None and self.parent.children is not None:
            self.parent.children.discard(self.handler)
        self.handler.settle(status, result, error, self.via_future)
        # Nothing runs for this run any more. Dropping the links back to it from its
        # context, handler and listener leaves no reference cycle, so reference counting
        # frees a finished run at once instead of the cyclic collector, later.
        self.handler = None  # type: ignore[assignment]
        self.listener = self.on_sent = None
        self.ctx = None  # type: ignore[assignment]
