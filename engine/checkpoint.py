"""Checkpoints: a run between steps, as JSON, and resuming a run from one.

A checkpoint holds the state store, every invocation that is queued or in flight (an
in-flight one runs again on resume: steps are at-least-once), the events its waits had
already received, collect buffers, events nobody has claimed yet, and the count of
unanswered input requests. Invocation ids are kept, so a host can tell a re-run apart from
new work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, WorkflowError
from .events import Event, deserialize_event, serialize_event

if TYPE_CHECKING:
    from .context import Context
    from .run import Run
    from .workflow import Workflow

FORMAT = 1


def workflow_key(workflow: Workflow) -> str:
    cls = type(workflow)
    return f"{cls.__module__}.{cls.__qualname__}"


def capture(ctx: Context) -> dict[str, Any]:
    run = ctx._run
    base: dict[str, Any] = {
        "format": FORMAT,
        "workflow": workflow_key(ctx._workflow) if ctx._workflow is not None else None,
        "store": encode_state(ctx.store.to_dict()),
    }
    if run is None:
        pending = ctx._checkpoint or {}
        return {**pending, **base}
    ended = run.ending is not None
    works = (
        []
        if ended
        else sorted(
            [*run.in_flight.values(), *(w for q in run.queues.values() for w in q)],
            key=lambda w: w.id,
        )
    )
    return {
        **base,
        "run_id": run.run_id,
        "status": run.status.value,
        "next_id": run.next_id,
        "works": [
            {
                "id": w.id,
                "step": w.spec.name,
                "event": serialize_event(w.event),
                "received": [serialize_event(e) for e in w.received],
            }
            for w in works
        ],
        "collect": {k: [serialize_event(e) for e in v] for k, v in run.collect.items()},
        "unclaimed": [serialize_event(e) for e in run.unclaimed],
        "awaiting_input": 0 if ended else run.awaiting_input,
        "waiters": [
            {
                "id": w.id,
                "type": w.event_type.type_key(),
                "requirements": encode_state(w.requirements or {}),
                "invocation": w.work.id if w.work is not None else None,
            }
            for w in run.waiters
        ],
    }


def validate_checkpoint(workflow: Workflow, data: dict[str, Any]) -> None:
    if not isinstance(data, dict):
        raise CheckpointError("a checkpoint must be a JSON object")
    if data.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint format {data.get('format')!r} is not supported (expected {FORMAT})"
        )
    expected = workflow_key(workflow)
    if data.get("workflow") not in (None, expected):
        raise CheckpointError(
            f"checkpoint belongs to workflow {data.get('workflow')}, not {expected}"
        )


def has_work(data: dict[str, Any]) -> bool:
    """Whether the checkpoint describes a run that was still going."""
    return bool(data.get("works")) or bool(data.get("awaiting_input"))


def restore(run: Run, data: dict[str, Any]) -> None:
    """Load a checkpoint into a fresh run and start its pending invocations again."""
    known = run.graph.event_types()

    def event(payload: Any) -> Event:
        try:
            return deserialize_event(payload, known)
        except WorkflowError as e:
            raise CheckpointError(f"checkpoint holds an event that cannot be rebuilt: {e}") from e

    works = sorted(data.get("works", []), key=lambda w: int(w["id"]))
    for w in works:
        if w["step"] not in run.graph.steps:
            raise CheckpointError(f"checkpoint names step '{w['step']}', which the workflow lacks")
    run.next_id = max([int(data.get("next_id", 1)), *(int(w["id"]) + 1 for w in works)])
    run.collect = {k: [event(e) for e in v] for k, v in data.get("collect", {}).items()}
    # Events that in-flight waits had consumed go back to the pool their re-run will ask.
    run.unclaimed = [event(e) for w in works for e in w.get("received", [])]
    run.unclaimed += [event(e) for e in data.get("unclaimed", [])]
    run.awaiting_input = int(data.get("awaiting_input", 0))
    for w in works:
        run.enqueue(run.graph.steps[w["step"]], event(w["event"]), wid=int(w["id"]))


def encode_state(value: Any, path: str = "") -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Event):
        return {"$event": serialize_event(value)}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"state key {path}{k!r} is not a string")
            out[k] = encode_state(v, f"{path}{k}.")
        return {"$dict": out} if "$event" in out or "$dict" in out else out
    if isinstance(value, list | tuple):
        return [encode_state(v, path) for v in value]
    raise CheckpointError(
        f"state value at '{path.rstrip('.') or '(root)'}' is a {type(value).__name__}, which "
        "a checkpoint cannot carry; store JSON values or Events",
        path=path,
    )


def decode_state(value: Any, workflow: Workflow | None = None) -> Any:
    if isinstance(value, list):
        return [decode_state(v, workflow) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$event"}:
            known = workflow.event_types() if workflow is not None else ()
            return deserialize_event(value["$event"], known)
        if set(value) == {"$dict"}:
            value = value["$dict"]
        return {k: decode_state(v, workflow) for k, v in value.items()}
    return value
