"""Plain Python views of the service's messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2

from ._pb import workflow_pb2 as pb

TERMINAL_KINDS = frozenset({"RUN_SUCCEEDED", "RUN_FAILED", "RUN_CANCELLED", "RUN_TIMED_OUT"})
ENDED = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"})


@dataclass(frozen=True, slots=True)
class RunErrorInfo:
    type: str
    message: str
    step: str


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    workflow: str
    status: str  # "RUNNING", "SUCCEEDED", ... (the enum name without its prefix)
    input: dict[str, Any]
    result: Any
    error: RunErrorInfo | None
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    last_sequence: int
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.status in ENDED


@dataclass(frozen=True, slots=True)
class Event:
    run_id: str
    sequence: int
    kind: str  # "RUN_STARTED", "STEP_STARTED", "STREAM", ... (without the prefix)
    type: str
    step: str
    data: dict[str, Any]
    time: datetime

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    name: str
    description: str
    input_schema: dict[str, Any]
    accepted_events: dict[str, dict[str, Any]]
    steps: list[str]


def struct_to_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return {k: value_to_python(v) for k, v in s.fields.items()}


def value_to_python(v: struct_pb2.Value) -> Any:
    """A Value as plain Python. Struct numbers are doubles; whole ones come back as int,
    as they would from JSON text."""
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() and abs(n) < 2**53 else n
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return struct_to_dict(v.struct_value)
    if kind == "list_value":
        return [value_to_python(x) for x in v.list_value.values]
    return None


def run_from_pb(m: pb.Run) -> Run:
    return Run(
        run_id=m.run_id,
        workflow=m.workflow,
        status=pb.RunStatus.Name(m.status).removeprefix("RUN_STATUS_"),
        input=struct_to_dict(m.input),
        result=value_to_python(m.result) if m.HasField("result") else None,
        error=RunErrorInfo(m.error.type, m.error.message, m.error.step)
        if m.HasField("error")
        else None,
        created_at=m.created_at.ToDatetime() if m.HasField("created_at") else None,
        started_at=m.started_at.ToDatetime() if m.HasField("started_at") else None,
        ended_at=m.ended_at.ToDatetime() if m.HasField("ended_at") else None,
        last_sequence=m.last_sequence,
        labels=dict(m.labels),
    )


def event_from_pb(m: pb.WorkflowEvent) -> Event:
    return Event(
        run_id=m.run_id,
        sequence=m.sequence,
        kind=pb.EventKind.Name(m.kind).removeprefix("EVENT_KIND_"),
        type=m.type,
        step=m.step,
        data=struct_to_dict(m.data),
        time=m.time.ToDatetime(),
    )


def workflow_from_pb(m: pb.WorkflowInfo) -> WorkflowInfo:
    return WorkflowInfo(
        name=m.name,
        description=m.description,
        input_schema=struct_to_dict(m.input_schema),
        accepted_events={e.type: struct_to_dict(e.schema) for e in m.accepted_events},
        steps=list(m.steps),
    )
