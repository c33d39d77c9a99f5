"""``Workflow``: a class whose ``@step`` methods make up the step graph."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import ValidationError

from .checkpoint import has_work, restore
from .context import Context
from .decorators import STEP_CONFIG_ATTR
from .errors import EventValidationError, WorkflowRuntimeError, WorkflowValidationError
from .events import Event, HumanResponseEvent, StartEvent, build_event, resolve_event_type
from .events import validation_fields as _fields
from .graph import StepGraph, analyse_step, build_graph
from .handler import WorkflowHandler
from .ids import new_run_id
from .listener import RunListener
from .run import CURRENT_WORK, Run
from .status import RunStatus

_DEFAULT: Any = object()

# Graphs are a property of the class: analysed once, shared by every instance and run.
_GRAPHS: weakref.WeakKeyDictionary[type[Workflow], dict[bool, StepGraph]] = (
    weakref.WeakKeyDictionary()
)


class Workflow:
    """Subclass and decorate async methods with ``@step``.

    ``timeout`` (seconds, None for none) bounds each run. The graph is validated when the
    workflow is built; ``disable_validation=True`` skips the checks.
    """

    #: Event types that may be sent in from outside (besides HumanResponseEvent subclasses
    #: that steps accept), e.g. those a step awaits with ``ctx.wait_for_event``.
    external_events: ClassVar[tuple[type[Event], ...]] = ()
    #: Whether a host may resume interrupted runs of this workflow from checkpoints
    #: (steps then run at least once). False: interrupted runs fail instead.
    durable: ClassVar[bool] = True
    _free_steps: ClassVar[dict[str, Callable[..., Any]]]

    def __init__(
        self,
        timeout: float | None = None,
        disable_validation: bool = False,
        verbose: bool = False,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive or None, got {timeout!r}")
        self.timeout = timeout
        self.verbose = verbose
        self._graph = self._class_graph(validate=not disable_validation)

    # ---- the graph ------------------------------------------------------------------------

    @classmethod
    def add_step(cls, fn: Callable[..., Any]) -> None:
        """Attach a free-function step (``@step(workflow=MyWorkflow)``)."""
        if "_free_steps" not in cls.__dict__:
            cls._free_steps = {}
        cls._free_steps[fn.__name__] = fn
        _GRAPHS.pop(cls, None)

    @classmethod
    def _class_graph(cls, validate: bool) -> StepGraph:
        cached = _GRAPHS.setdefault(cls, {})
        graph = cached.get(validate)
        if graph is None:
            graph = cached[validate] = build_graph(
                cls.__name__, cls._step_specs(), cls.external_events, validate
            )
        return graph

    @classmethod
    def _step_specs(cls) -> list[Any]:
        found: dict[str, tuple[Callable[..., Any], bool]] = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if callable(attr) and hasattr(attr, STEP_CONFIG_ATTR):
                    found[name] = (attr, True)
                elif name in found and found[name][1]:
                    del found[name]  # overridden without @step
            for name, fn in vars(klass).get("_free_steps", {}).items():
                found[name] = (fn, False)
        for name in found:
            if hasattr(Workflow, name):
                raise WorkflowValidationError(
                    f"{cls.__name__}: step '{name}' would hide Workflow.{name}, which the "
                    "engine and its hosts rely on; give the step another name"
                )
        return [analyse_step(name, fn, is_method) for name, (fn, is_method) in found.items()]

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def description(self) -> str:
        doc = inspect.getdoc(type(self)) or ""
        return doc.split("\n\n", 1)[0].replace("\n", " ")

    @property
    def start_event_type(self) -> type[StartEvent]:
        return self._graph.start_type

    @property
    def steps(self) -> dict[str, Any]:
        return dict(self._graph.steps)

    def event_types(self) -> list[type[Event]]:
        return self._graph.event_types()

    def external_event_types(self) -> list[type[Event]]:
        """Event types that may be sent into a run from outside."""
        accepted = [
            t
            for s in self._graph.steps.values()
            for t in s.accepts
            if issubclass(t, HumanResponseEvent)
        ]
        return list(dict.fromkeys([*accepted, *self._graph.external]))

    def input_schema(self) -> dict[str, Any]:
        return self._graph.start_type.model_json_schema()

    def build_event(self, type_name: str, data: dict[str, Any]) -> Event:
        """Build one of this workflow's events from its name and JSON data (for hosts)."""
        cls = resolve_event_type(type_name, [*self.external_event_types(), *self.event_types()])
        return build_event(cls, data)

    def build_start_event(self, data: dict[str, Any]) -> StartEvent:
        event = build_event(self._graph.start_type, data)
        assert isinstance(event, StartEvent)
        return event

    # ---- runs -----------------------------------------------------------------------------

    def run(
        self, ctx: Context | None = None, start_event: StartEvent | None = None, **kwargs: Any
    ) -> WorkflowHandler:
        """Start a run; keyword arguments become the StartEvent's fields."""
        if start_event is not None and kwargs:
            raise WorkflowRuntimeError("pass either start_event or keyword arguments, not both")
        resuming = ctx is not None and ctx._checkpoint is not None and has_work(ctx._checkpoint)
        if start_event is None and not resuming:
            try:
                start_event = self._graph.start_type(**kwargs)
            except ValidationError as e:
                raise EventValidationError(self._graph.start_type.__name__, _fields(e)) from e
        # Called through the class: a step may well be named like any method of ours.
        return Workflow.start_run(self, start_event, ctx=ctx)

    def start_run(
        self,
        start_event: StartEvent | None = None,
        *,
        ctx: Context | None = None,
        run_id: str | None = None,
        listener: RunListener | None = None,
        timeout: float | None = _DEFAULT,
        retain_stream: bool = True,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> WorkflowHandler:
        """Start a run with host options (``run()`` is the same with keyword input).

        ``listener`` hears the run's lifecycle; ``timeout`` overrides the workflow's;
        ``retain_stream=False`` keeps no stream history in memory (for hosts that consume
        the stream through the listener); ``loop``, the running loop, saves a host that
        starts many runs looking it up for each (on Python 3.11 a lookup is a system call).
        """
        graph = self._graph
        if ctx is None:
            ctx = Context(self)
        elif ctx._run is not None and ctx._run.ending is None:
            raise WorkflowRuntimeError("this context belongs to a run that is still going")
        checkpoint, ctx._checkpoint = ctx._checkpoint, None
        resume = checkpoint is not None and has_work(checkpoint)
        if not resume:
            if start_event is None:
                start_event = graph.start_type()
            elif not graph.route(type(start_event)):
                raise WorkflowRuntimeError(
                    f"no step of {self.name} accepts {type(start_event).__name__}"
                )
        run = Run(
            self,
            graph,
            ctx,
            run_id or new_run_id(),
            listener,
            self.timeout if timeout is _DEFAULT else timeout,
            retain_stream,
            loop or asyncio.get_running_loop(),
        )
        handler = run.handler = WorkflowHandler(run)
        ctx._workflow = self
        ctx._run = run
        parent = CURRENT_WORK.get()
        if parent is not None and parent.run.ending is None:
            run.parent = parent.run
            if parent.run.children is None:
                parent.run.children = set()
            parent.run.children.add(handler)
        run.status = RunStatus.RUNNING
        if listener is not None:
            listener.run_started(handler, None if resume else start_event)
        if run.timeout is not None:
            run.timer = run.loop.call_later(run.timeout, run.time_out)
        if resume:
            assert checkpoint is not None
            restore(run, checkpoint)
            run.check_idle()
        else:
            assert start_event is not None
            run.dispatch(start_event, None)
        return handler
