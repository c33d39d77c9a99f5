"""Conversions between protobuf messages and engine / Python values, all in one place."""

from __future__ import annotations

import time
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from pydantic_core import to_jsonable_python

from engine import RunStatus

from ._pb import workflow_pb2 as pb

STATUS_TO_PB: dict[RunStatus, pb.RunStatus.ValueType] = {
    RunStatus.PENDING: pb.RUN_STATUS_PENDING,
    RunStatus.RUNNING: pb.RUN_STATUS_RUNNING,
    RunStatus.WAITING_FOR_INPUT: pb.RUN_STATUS_WAITING_FOR_INPUT,
    RunStatus.SUCCEEDED: pb.RUN_STATUS_SUCCEEDED,
    RunStatus.FAILED: pb.RUN_STATUS_FAILED,
    RunStatus.CANCELLED: pb.RUN_STATUS_CANCELLED,
    RunStatus.TIMED_OUT: pb.RUN_STATUS_TIMED_OUT,
}

TERMINAL_KIND: dict[RunStatus, pb.EventKind.ValueType] = {
    RunStatus.SUCCEEDED: pb.EVENT_KIND_RUN_SUCCEEDED,
    RunStatus.FAILED: pb.EVENT_KIND_RUN_FAILED,
    RunStatus.CANCELLED: pb.EVENT_KIND_RUN_CANCELLED,
    RunStatus.TIMED_OUT: pb.EVENT_KIND_RUN_TIMED_OUT,
}

TERMINAL_KINDS = frozenset(TERMINAL_KIND.values())
ENDED_STATUSES = frozenset(STATUS_TO_PB[s] for s in TERMINAL_KIND)


def jsonable(value: Any) -> Any:
    """A JSON-compatible form of any result or field; what cannot be encoded becomes repr()."""
    return to_jsonable_python(value, fallback=repr)


def to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if data:
        fill_struct(s, data)
    return s


def fill_struct(target: struct_pb2.Struct, data: dict[str, Any]) -> None:
    """``target.update(data)``, with numbers and strings set directly: most results and
    schemas are mostly flat, and protobuf's general path costs several times more per
    field."""
    fields = target.fields
    for key, value in data.items():
        kind = type(value)
        if kind is int or kind is float:
            fields[key].number_value = value
        elif kind is str:
            fields[key].string_value = value
        else:  # bools, None, nested lists and mappings
            target.update({key: value})


def to_value(value: Any) -> struct_pb2.Value:
    v = struct_pb2.Value()
    _set_value(v, jsonable(value))
    return v


def _set_value(target: struct_pb2.Value, value: Any) -> None:
    """``json_format.ParseDict(value, target)`` for a JSON-compatible ``value``, with a
    scalar or a flat mapping set directly: json_format's general path costs several times
    more, and a run's result is converted once per run."""
    kind = type(value)
    if kind is str:
        target.string_value = value
    elif kind is bool:
        target.bool_value = value
    elif kind is int or kind is float:
        target.number_value = value
    elif value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif kind is dict:
        target.struct_value.SetInParent()  # set even when empty
        fill_struct(target.struct_value, value)
    else:
        json_format.ParseDict(value, target)


def stamp(target: timestamp_pb2.Timestamp) -> None:
    """Set ``target`` to now, in place: cheaper than building a Timestamp to copy in."""
    ns = time.time_ns()
    target.seconds = ns // 1_000_000_000
    target.nanos = ns % 1_000_000_000


def struct_to_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    fields = s.fields  # by key: the map's items() iterates in Python, two calls an item
    return {k: _value(fields[k]) for k in fields}


def _value(v: struct_pb2.Value) -> Any:
    # A direct walk: several times cheaper than json_format for the small inputs of a start.
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "number_value":
        return v.number_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return struct_to_dict(v.struct_value)
    if kind == "list_value":
        return [_value(x) for x in v.list_value.values]
    return None
