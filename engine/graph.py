"""The step graph: each step's accepted and returned event types, read from its annotations,
checked once per workflow class, and the routing table from event type to steps."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from .decorators import STEP_CONFIG_ATTR, StepConfig
from .errors import WorkflowValidationError
from .events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent

# How a step's callable takes its arguments: (workflow, ctx, event) -> coroutine.
Invoker = Callable[[Any, Any, Event], Coroutine[Any, Any, Any]]


@dataclass(frozen=True, slots=True, eq=False)
class StepSpec:
    name: str
    fn: Callable[..., Any]
    accepts: tuple[type[Event], ...]
    returns: tuple[type[Event], ...]
    config: StepConfig
    invoke: Invoker

    @property
    def num_workers(self) -> int:
        return self.config.num_workers


@dataclass(slots=True, eq=False)
class StepGraph:
    steps: dict[str, StepSpec]
    start_type: type[StartEvent]
    external: tuple[type[Event], ...]
    _routes: dict[type[Event], tuple[StepSpec, ...]] = field(default_factory=dict)

    def route(self, cls: type[Event]) -> tuple[StepSpec, ...]:
        """Steps that accept an event of exactly this class (subclasses go to base acceptors)."""
        try:
            return self._routes[cls]
        except KeyError:
            targets = tuple(s for s in self.steps.values() if issubclass(cls, s.accepts))
            self._routes[cls] = targets
            return targets

    def event_types(self) -> list[type[Event]]:
        """Every event class that the graph names, for resolving type names."""
        seen: dict[type[Event], None] = {}
        for s in self.steps.values():
            for t in (*s.accepts, *s.returns):
                seen.setdefault(t, None)
        for t in self.external:
            seen.setdefault(t, None)
        return list(seen)


def _is_context(annotation: Any) -> bool:
    from .context import Context

    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, Context)


def _event_types(annotation: Any) -> tuple[list[type[Event]], bool] | None:
    """Event classes in an annotation (a class or union) and whether None is allowed."""
    if annotation is None or annotation is type(None):
        return [], True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        found: list[type[Event]] = []
        optional = False
        for arg in typing.get_args(annotation):
            inner = _event_types(arg)
            if inner is None:
                return None
            found.extend(inner[0])
            optional = optional or inner[1]
        return found, optional
    if isinstance(annotation, type) and issubclass(annotation, Event):
        return [annotation], False
    return None


def _hints(fn: Callable[..., Any], name: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception as e:  # unresolvable forward reference
        raise WorkflowValidationError(
            f"step '{name}': cannot resolve its type annotations ({e}); "
            "define the event classes at module level"
        ) from e


def analyse_step(name: str, fn: Callable[..., Any], is_method: bool) -> StepSpec:
    """Read one step's signature: which parameter is the context, which the event."""
    config: StepConfig = getattr(fn, STEP_CONFIG_ATTR)
    if not inspect.iscoroutinefunction(fn):
        raise WorkflowValidationError(f"step '{name}' must be an async function (async def)")
    hints = _hints(fn, name)
    params = list(inspect.signature(fn).parameters.values())
    if is_method:
        params = params[1:]
    layout: list[str] = []
    accepts: list[type[Event]] = []
    for p in params:
        ann = hints.get(p.name)
        if ann is not None and _is_context(ann):
            layout.append("ctx")
            continue
        if ann is None and p.name in ("ctx", "context"):
            layout.append("ctx")
            continue
        ev_types = _event_types(ann) if ann is not None else None
        if ev_types is not None and ev_types[0] and not accepts:
            accepts = ev_types[0]
            layout.append("ev")
            continue
        if p.default is not inspect.Parameter.empty:
            continue
        raise WorkflowValidationError(
            f"step '{name}': parameter '{p.name}' is neither the Context nor an event "
            "(annotate the event parameter with an Event subclass or a union of them)"
        )
    if not accepts:
        raise WorkflowValidationError(
            f"step '{name}' has no parameter annotated with an Event type; "
            "annotate the event it consumes, e.g. `ev: StartEvent`"
        )
    if "return" not in hints:
        raise WorkflowValidationError(
            f"step '{name}' has no return annotation; annotate the event types it returns (or None)"
        )
    returned = _event_types(hints["return"])
    if returned is None:
        raise WorkflowValidationError(
            f"step '{name}': return annotation {hints['return']!r} must be Event types, "
            "a union of them, or None"
        )
    return StepSpec(
        name=name,
        fn=fn,
        accepts=tuple(accepts),
        returns=tuple(returned[0]),
        config=config,
        invoke=_make_invoker(fn, tuple(layout), is_method),
    )


def _make_invoker(fn: Callable[..., Any], layout: tuple[str, ...], is_method: bool) -> Invoker:
    # A closure per layout keeps the per-invocation cost to one plain call.
    if is_method:
        if layout == ("ctx", "ev"):
            return lambda wf, ctx, ev: fn(wf, ctx, ev)
        if layout == ("ev",):
            return lambda wf, ctx, ev: fn(wf, ev)
        if layout == ("ev", "ctx"):
            return lambda wf, ctx, ev: fn(wf, ev, ctx)
    else:
        if layout == ("ctx", "ev"):
            return lambda wf, ctx, ev: fn(ctx, ev)
        if layout == ("ev",):
            return lambda wf, ctx, ev: fn(ev)
        if layout == ("ev", "ctx"):
            return lambda wf, ctx, ev: fn(ev, ctx)
    raise WorkflowValidationError(f"step '{fn.__name__}' takes the context more than once")


def _related(a: type[Event], b: type[Event]) -> bool:
    return issubclass(a, b) or issubclass(b, a)


def build_graph(
    workflow_name: str,
    steps: Iterable[StepSpec],
    external: Iterable[type[Event]] = (),
    validate: bool = True,
) -> StepGraph:
    by_name = {s.name: s for s in steps}
    external = tuple(external)
    starts = [t for s in by_name.values() for t in s.accepts if issubclass(t, StartEvent)]
    start_type: type[StartEvent] = StartEvent
    for t in starts:
        if issubclass(t, start_type):
            start_type = t
        elif not issubclass(start_type, t):
            raise WorkflowValidationError(
                f"{workflow_name}: steps accept unrelated start events "
                f"{start_type.__name__} and {t.__name__}"
            )
    graph = StepGraph(steps=by_name, start_type=start_type, external=external)
    if validate:
        _validate(workflow_name, graph, bool(starts))
    return graph


def _validate(workflow_name: str, graph: StepGraph, has_start: bool) -> None:
    steps = list(graph.steps.values())
    if not has_start:
        raise WorkflowValidationError(
            f"{workflow_name}: no step accepts StartEvent; one step must take `ev: StartEvent`"
        )
    produced = {t: s for s in steps for t in s.returns}
    if not any(issubclass(t, StopEvent) for t in produced):
        raise WorkflowValidationError(
            f"{workflow_name}: no step returns StopEvent; annotate the final step `-> StopEvent`"
        )
    accepted = {t: s for s in steps for t in s.accepts}
    for t, s in produced.items():
        if issubclass(t, StopEvent | InputRequiredEvent):
            continue
        if not any(_related(t, a) for a in accepted):
            raise WorkflowValidationError(
                f"{workflow_name}: step '{s.name}' produces {t.__name__}, but no step consumes it"
            )
    for t, s in accepted.items():
        if issubclass(t, StartEvent | HumanResponseEvent) or t in graph.external:
            continue
        if not any(_related(t, p) for p in produced):
            raise WorkflowValidationError(
                f"{workflow_name}: step '{s.name}' consumes {t.__name__}, "
                "but no step produces it (add it to a step's return annotation, or to "
                "the workflow's external_events if it is sent in from outside)"
            )
