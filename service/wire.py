"""Run events encoded straight into protobuf's wire format.

Every event is written once and then kept, stored and sent many times over, so the event
log holds each one as the bytes of its ``workflow.v1.WorkflowEvent``, encoded when first
needed: the SQLite store's writer writes them as they are, and ``StreamEvents`` sends them
without serializing again. A message kept as a protobuf object costs about 1.4 KB of
memory (a small event's bytes, about 100), and building one through protobuf's Python
API, its ``data`` Struct entry by entry, then serializing it takes more interpreter work
than writing the bytes here.

The field numbers below are those of ``protos/workflow/v1/workflow.proto`` and of the
well-known types; ``tests/service/test_wire.py`` checks them against the generated
descriptors and checks that protobuf parses what is written here back to the same message.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

_DOUBLE = struct.Struct("<d").pack
_BYTE = tuple(bytes((i,)) for i in range(256))

# Tags (field number << 3 | wire type) of WorkflowEvent.
_RUN_ID = b"\x0a"  # 1, length-delimited
_SEQUENCE = b"\x10"  # 2, varint
_KIND = b"\x18"  # 3, varint
_TYPE = b"\x22"  # 4, length-delimited
_STEP = b"\x2a"  # 5, length-delimited
_DATA = b"\x32"  # 6, length-delimited (Struct)
_TIME = b"\x3a"  # 7, length-delimited (Timestamp)
# RunWorkflowResponse: run = 1.
_RESPONSE_RUN = b"\x0a"
# Struct: map<string, Value> fields = 1, each entry a message {key = 1, value = 2}.
_ENTRY = b"\x0a"
_ENTRY_KEY = b"\x0a"
_ENTRY_VALUE = b"\x12"
# Value's oneof: null_value = 1 (varint), number_value = 2 (64-bit), string_value = 3,
# bool_value = 4 (varint), struct_value = 5, list_value = 6 (ListValue: repeated Value = 1).
_NULL = b"\x08\x00"
_NUMBER = b"\x11"
_STRING = b"\x1a"
_TRUE = b"\x20\x01"
_FALSE = b"\x20\x00"
_STRUCT = b"\x2a"
_LIST = b"\x32"
_LIST_ITEM = b"\x0a"
# Timestamp: seconds = 1, nanos = 2, both varints.
_SECONDS = b"\x08"
_NANOS = b"\x10"

# Encoded strings that recur in every run (event types, step names, data keys), by string.
# Bounded, so that endless distinct strings cannot grow them.
_CACHE_LIMIT = 4096
_HEADERS: dict[tuple[int, str, str | None], bytes] = {}  # by (kind, type, step)
_NUMBER_ENTRIES: dict[str, bytes] = {}  # everything of a map entry before its double
_KEYS: dict[str, bytes] = {}


# (seconds, encoded seconds field, its size) of the latest timestamp: events come many to a
# second. Replaced whole, so a reader in another thread never pairs one second with another's
# bytes.
_last_second: list[tuple[int, bytes, int]] = [(-1, b"", 0)]


class LoggedEvent:
    """One event of a run's log: what readers filter on, and the message's bytes.

    The bytes are encoded when first read, from the fields the event was logged with
    (``lazy``): a run started with ``RunWorkflow(wait)`` in memory, which nobody streams,
    is never encoded. Threads may read ``wire`` at once (the SQLite writer does): each
    then encodes the same bytes."""

    __slots__ = ("_fields", "_wire", "kind", "sequence")

    def __init__(self, sequence: int, kind: int, wire: bytes) -> None:
        self.sequence = sequence
        self.kind = kind
        self._wire: bytes | None = wire
        self._fields: EventFields | None = None

    @classmethod
    def lazy(cls, fields: EventFields) -> LoggedEvent:
        """The event ``encode_event(*fields)`` describes, not yet encoded."""
        event = _new_object(cls)
        event.sequence = fields[1]
        event.kind = fields[2]
        event._wire = None
        event._fields = fields
        return event

    @property
    def wire(self) -> bytes:
        """The serialized ``workflow.v1.WorkflowEvent``."""
        # _fields is read before _wire and cleared after it is set, so a thread that finds
        # no bytes still holds the fields to encode.
        fields = self._fields
        wire = self._wire
        if wire is None:
            assert fields is not None
            wire = self._wire = encode_event(*fields)
            self._fields = None
        return wire

    def __repr__(self) -> str:
        return f"LoggedEvent(sequence={self.sequence}, kind={self.kind})"


# step_data's arguments: attempt, invocation, then for a finished step its duration in
# milliseconds and its error, if any.
StepData = tuple[int, int, "float | None", "str | None"]
# encode_event's arguments: run_id field, sequence, kind, type, step, data field (or
# StepData), time (ns).
EventFields = tuple[bytes, int, int, str, "str | None", "bytes | StepData", int]
_new_object = object.__new__


def varint(n: int) -> bytes:
    """``n`` (not negative) as a protobuf varint."""
    # Unrolled up to five bytes (any nanos, lengths, sequences): a loop costs several times more.
    if n < 0x80:
        return _BYTE[n]
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0x200000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
    if n < 0x10000000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21))
    if n < 0x800000000:
        low = n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80
        return bytes((*low, n >> 21 & 0x7F | 0x80, n >> 28))
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _utf8(text: str) -> bytes:
    # A lone surrogate cannot be encoded; protobuf would refuse the whole message.
    return text.encode("utf-8", "replace")


def _delimited(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: its tag, the body's length, the body (written out in place
    where it runs for every event or run, a call less)."""
    return tag + varint(len(body)) + body


def _entry(key_field: bytes, value: bytes) -> bytes:
    """A Struct's map entry: its encoded key field and the body of its Value."""
    return _delimited(_ENTRY, key_field + _delimited(_ENTRY_VALUE, value))


def _text(tag: bytes, text: str) -> bytes:
    raw = _utf8(text)
    return tag + varint(len(raw)) + raw


def _cached(cache: dict[str, bytes], tag: bytes, text: str) -> bytes:
    field = cache.get(text)
    if field is None:
        field = _text(tag, text)
        if len(cache) < _CACHE_LIMIT:
            cache[text] = field
    return field


def run_response(run: bytes) -> bytes:
    """The ``RunWorkflowResponse`` whose ``run`` is the serialized ``Run`` given: building
    the response message would copy the whole run into it first."""
    return _RESPONSE_RUN + varint(len(run)) + run


def run_id_field(run_id: str) -> bytes:
    """The encoded ``run_id`` field, which starts every event of the run."""
    return _text(_RUN_ID, run_id) if run_id else b""


def encode_event(
    run_id_field: bytes,
    sequence: int,
    kind: int,
    type_name: str,
    step: str | None,
    data: bytes | StepData,
    time_ns: int,
) -> bytes:
    """A serialized ``WorkflowEvent``; ``data`` is its encoded ``data`` field, from
    ``data_field`` (empty for none), or the arguments of ``step_data`` that make it."""
    # This runs for every event of every run: what recurs is cached, small numbers are
    # looked up, and fields go in whatever order is cheapest (a parser takes any order).
    if isinstance(data, tuple):  # a step's start or finish, encoded only when read like the rest
        data = step_data(*data)
    header = _HEADERS.get((kind, type_name, step))
    if header is None:
        header = _header(kind, type_name, step)
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    second = _last_second[0]
    if second[0] != seconds:
        field = _SECONDS + varint(seconds)
        second = _last_second[0] = (seconds, field, len(field))
    if nanos >= 0x10000000:  # most of the time: five bytes, set here without a call
        nanos_field = bytes(
            (
                0x10,
                nanos & 0x7F | 0x80,
                nanos >> 7 & 0x7F | 0x80,
                nanos >> 14 & 0x7F | 0x80,
                nanos >> 21 & 0x7F | 0x80,
                nanos >> 28,
            )
        )
    else:
        nanos_field = _NANOS + varint(nanos) if nanos else b""
    return b"".join(
        (
            run_id_field,
            header,
            _SEQUENCE,
            _BYTE[sequence] if sequence < 0x80 else varint(sequence),
            _TIME,
            _BYTE[second[2] + len(nanos_field)],  # a Timestamp's fields take under 128 bytes
            second[1],
            nanos_field,
            data,
        )
    )


def data_field(data: Mapping[str, Any] | None) -> bytes:
    """An event's encoded ``data`` field holding ``data`` (JSON-compatible values)."""
    if not data:
        return b""
    body = _struct(data)
    size = len(body)
    return _DATA + (_BYTE[size] if size < 0x80 else varint(size)) + body


def struct_field(body: bytes) -> bytes:
    """An event's encoded ``data`` field holding the serialized ``Struct`` ``body``: the
    same data as ``data_field`` of that Struct's dict, the map entries in another order."""
    return _DATA + varint(len(body)) + body if body else b""


def result_field(value: bytes) -> bytes:
    """The encoded ``data`` field ``{"result": value}`` of a RUN_SUCCEEDED event, from the
    serialized ``Value`` of the run's result (protobuf serializes a large result far faster
    than ``data_field`` encodes it)."""
    return _delimited(_DATA, _entry(_RESULT_KEY, value))


def step_data(
    attempt: int, invocation: int, duration_ms: float | None = None, error: str | None = None
) -> bytes:
    """The encoded ``data`` field of a STEP_STARTED event (``attempt``, ``invocation``) or,
    with ``duration_ms`` (and an ``error`` if it failed), of a STEP_FINISHED event: the
    same bytes as ``data_field`` of that dict, made without building it. Two of these
    come with every step invocation."""
    started = _STEP_STARTED.get((attempt, invocation))
    if started is None:
        started = _step_started(attempt, invocation)
    if duration_ms is None:
        return started
    # Past the field's tag and length, one byte: the two entries take 47 bytes.
    body = started[2:] + _DURATION + _DOUBLE(duration_ms)
    if error is None:
        return _DATA + _STEP_FINISHED_SIZE + body
    return _delimited(_DATA, body + _struct({"error": error}))


def _step_started(attempt: int, invocation: int) -> bytes:
    field = data_field({"attempt": attempt, "invocation": invocation})
    if len(_STEP_STARTED) < _CACHE_LIMIT:
        _STEP_STARTED[(attempt, invocation)] = field
    return field


def _header(kind: int, type_name: str, step: str | None) -> bytes:
    """The kind, type and step fields, which recur in every run."""
    header = _KIND + varint(kind)
    if type_name:
        header += _text(_TYPE, type_name)
    if step:
        header += _text(_STEP, step)
    if len(_HEADERS) < _CACHE_LIMIT:
        _HEADERS[(kind, type_name, step)] = header
    return header


def _struct(data: Mapping[str, Any]) -> bytes:
    """The body of a Struct holding ``data``."""
    parts: list[bytes] = []
    for key, value in data.items():
        kind = type(value)
        if kind is int or kind is float:  # the common case: an entry of fixed size
            prefix = _NUMBER_ENTRIES.get(key)
            if prefix is None:
                prefix = _number_entry(key)
            parts.append(prefix + _DOUBLE(value))
            continue
        key_field = _KEYS.get(key)
        if key_field is None:
            key_field = _cached(_KEYS, _ENTRY_KEY, key)
        if kind is str:  # next most common: short enough that every length is one byte
            raw = value.encode("utf-8", "replace")  # _utf8, without the call
            size = len(raw)
            entry_size = len(key_field) + size + 4
            if entry_size < 0x80:
                parts += (_ENTRY, _BYTE[entry_size], key_field, _ENTRY_VALUE, _BYTE[size + 2])
                parts += (_STRING, _BYTE[size], raw)
                continue
            body = _delimited(_STRING, raw)  # longer: encoded once all the same
        else:
            body = _value(value)
        parts.append(_entry(key_field, body))
    return b"".join(parts)


def _number_entry(key: str) -> bytes:
    """A map entry holding a number, up to its 8 bytes of double."""
    field = _text(_ENTRY_KEY, key)
    # The entry: the key's field, then the value's tag, its length 9, the double's tag.
    prefix = _ENTRY + varint(len(field) + 11) + field + _ENTRY_VALUE + b"\x09" + _NUMBER
    if len(_NUMBER_ENTRIES) < _CACHE_LIMIT:
        _NUMBER_ENTRIES[key] = prefix
    return prefix


_RESULT_KEY = _text(_ENTRY_KEY, "result")
# STEP_STARTED data fields by (attempt, invocation); the entry that STEP_FINISHED adds.
_STEP_STARTED: dict[tuple[int, int], bytes] = {}
_DURATION = _number_entry("duration_ms")
# The size of a STEP_FINISHED body without an error: the two entries, then the duration.
_STEP_FINISHED_SIZE = _BYTE[
    len(data_field({"attempt": 1, "invocation": 1})) - 2 + len(_DURATION) + 8
]


def _value(value: Any) -> bytes:
    """The body of a Value holding ``value``."""
    if isinstance(value, str):
        return _text(_STRING, value)
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, int | float):
        return _NUMBER + _DOUBLE(value)
    if value is None:
        return _NULL
    if isinstance(value, Mapping):
        return _delimited(_STRUCT, _struct(value))
    if isinstance(value, list | tuple):
        return _delimited(_LIST, b"".join([_delimited(_LIST_ITEM, _value(v)) for v in value]))
    raise TypeError(f"cannot put a {type(value).__name__} in event data")


def read_header(wire: bytes) -> tuple[int, int]:
    """(sequence, kind) of a serialized ``WorkflowEvent``, without parsing the rest."""
    sequence = kind = 0
    i, end = 0, len(wire)
    while i < end:
        tag, i = _read_varint(wire, i)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, i = _read_varint(wire, i)
            if number == 2:
                sequence = value
            elif number == 3:
                kind = value
        elif wire_type == 2:
            size, i = _read_varint(wire, i)
            i += size
        elif wire_type == 1:
            i += 8
        elif wire_type == 5:
            i += 4
        else:
            raise ValueError(f"unexpected wire type {wire_type} in a stored event")
    return sequence, kind


def _read_varint(wire: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = wire[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
