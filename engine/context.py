"""``Context``: what a step (or the code holding a run's handler) uses to act on the run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import WorkflowRuntimeError
from .events import Event
from .run import CURRENT_WORK
from .store import StateStore

if TYPE_CHECKING:
    from .run import Run
    from .workflow import Workflow

E = TypeVar("E", bound=Event)


class Context:
    """One run's context: shared state, event sending, collecting, streaming and waiting.

    A context is created by ``workflow.run()``; ``Context(workflow)`` makes one ahead of a
    run (``workflow.run(ctx=ctx)``), and passing the context of an ended run to ``run()``
    starts a new run that keeps its state. ``to_dict()``/``from_dict()`` capture a run
    between steps and resume it.
    """

    __slots__ = ("_checkpoint", "_run", "_store", "_workflow")

    def __init__(self, workflow: Workflow | None = None) -> None:
        self._workflow = workflow
        self._run: Run | None = None
        self._store: StateStore | None = None  # made on first use: most runs never use it
        self._checkpoint: dict[str, Any] | None = None

    @property
    def store(self) -> StateStore:
        store = self._store
        if store is None:
            store = self._store = StateStore()
        return store

    @property
    def run_id(self) -> str | None:
        return self._run.run_id if self._run is not None else None

    @property
    def is_running(self) -> bool:
        return self._run is not None and self._run.ending is None

    def _live(self, what: str) -> Run:
        run = self._run
        if run is None:
            raise WorkflowRuntimeError(f"{what} needs a running workflow; start one with run()")
        return run

    def send_event(self, message: Event, step: str | None = None) -> None:
        """Dispatch ``message`` to every step that accepts its type, or to ``step`` only.

        From outside the run (``handler.ctx``), the event first goes to a matching
        ``wait_for_event``; if neither a waiter nor a step takes it, it is kept for the
        first ``wait_for_event`` that asks for it.
        """
        run = self._live("send_event")
        if not isinstance(message, Event):
            raise WorkflowRuntimeError(f"send_event takes an Event, not {type(message).__name__}")
        if step is not None:
            spec = run.graph.steps.get(step)
            if spec is None:
                known = ", ".join(sorted(run.graph.steps))
                raise WorkflowRuntimeError(f"no step named '{step}' (steps: {known})")
            if not isinstance(message, spec.accepts):
                raise WorkflowRuntimeError(
                    f"step '{step}' does not accept {type(message).__name__}"
                )
        work = CURRENT_WORK.get()
        if work is not None and work.run is run:
            if run.ending is None:
                run.dispatch(message, work, step)
        else:
            run.send_from_outside(message, step)

    def write_event_to_stream(self, ev: Event | None) -> None:
        """Add ``ev`` to the run's stream (``handler.stream_events()`` and listeners)."""
        if ev is None:
            return
        run = self._live("write_event_to_stream")
        if run.ending is not None:
            return
        work = CURRENT_WORK.get()
        run.write_stream(ev, work if work is not None and work.run is run else None)

    def collect_events(
        self, ev: Event, expected: Sequence[type[Event]], buffer_id: str | None = None
    ) -> list[Event] | None:
        """Buffer ``ev``; once events of every expected type are there, return them in the
        order asked (and clear them from the buffer), else ``None``.

        The buffer is per step unless ``buffer_id`` names a shared one.
        """
        run = self._live("collect_events")
        if buffer_id is None:
            work = CURRENT_WORK.get()
            buffer_id = work.spec.name if work is not None and work.run is run else "_outside"
        buf = run.collect.get(buffer_id)
        if buf is None:
            buf = run.collect[buffer_id] = []
        buf.append(ev)
        if len(buf) < len(expected):
            return None
        taken: list[int] = []
        picked: list[Event] = []
        for wanted in expected:
            for i, held in enumerate(buf):
                if isinstance(held, wanted) and i not in taken:
                    taken.append(i)
                    picked.append(held)
                    break
            else:
                return None
        rest = [held for i, held in enumerate(buf) if i not in taken]
        if rest:
            run.collect[buffer_id] = rest
        else:
            del run.collect[buffer_id]
        return picked

    async def wait_for_event(
        self,
        event_type: type[E],
        waiter_event: Event | None = None,
        waiter_id: str | None = None,
        requirements: dict[str, Any] | None = None,
        timeout: float | None = 2000,
    ) -> E:
        """Suspend the calling step until an event of ``event_type`` (whose fields equal
        ``requirements``) is sent in. ``waiter_event`` is written to the stream first; an
        :class:`InputRequiredEvent` there marks the run as waiting for input. An event sent
        before the wait began is not lost: it is kept and returned at once.
        """
        run = self._live("wait_for_event")
        work = CURRENT_WORK.get()
        got = await run.wait_for(
            work if work is not None and work.run is run else None,
            event_type,
            waiter_event,
            waiter_id,
            requirements,
            timeout,
        )
        return got  # type: ignore[return-value]

    def running_steps(self) -> list[str]:
        run = self._run
        if run is None:
            return []
        return sorted({w.spec.name for w in run.in_flight.values()})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible checkpoint of the run (or of the state, before any run)."""
        from .checkpoint import capture

        return capture(self)

    @classmethod
    def from_dict(cls, workflow: Workflow, data: dict[str, Any]) -> Context:
        """A context that resumes the checkpointed run when passed to ``workflow.run(ctx=)``."""
        from .checkpoint import decode_state, validate_checkpoint

        validate_checkpoint(workflow, data)
        ctx = cls(workflow)
        ctx._store = StateStore(decode_state(data.get("store", {}), workflow))
        ctx._checkpoint = data
        return ctx
