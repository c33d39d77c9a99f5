"""Events encoded by service.wire parse, with protobuf's own parser, to the message the
protobuf API would build from the same values."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor

from service import convert, wire
from service._pb import workflow_pb2 as pb

F = FieldDescriptor


def _fields(descriptor: Any) -> dict[str, tuple[int, int]]:
    return {f.name: (f.number, f.type) for f in descriptor.fields}


def test_the_field_numbers_the_encoder_assumes_are_the_contract_s() -> None:
    assert _fields(pb.WorkflowEvent.DESCRIPTOR) == {
        "run_id": (1, F.TYPE_STRING),
        "sequence": (2, F.TYPE_INT64),
        "kind": (3, F.TYPE_ENUM),
        "type": (4, F.TYPE_STRING),
        "step": (5, F.TYPE_STRING),
        "data": (6, F.TYPE_MESSAGE),
        "time": (7, F.TYPE_MESSAGE),
    }
    assert pb.WorkflowEvent.DESCRIPTOR.fields_by_name["data"].message_type.full_name == (
        "google.protobuf.Struct"
    )
    assert _fields(struct_pb2.Struct.DESCRIPTOR) == {"fields": (1, F.TYPE_MESSAGE)}
    entry = struct_pb2.Struct.DESCRIPTOR.fields_by_name["fields"].message_type
    assert _fields(entry) == {"key": (1, F.TYPE_STRING), "value": (2, F.TYPE_MESSAGE)}
    assert _fields(struct_pb2.Value.DESCRIPTOR) == {
        "null_value": (1, F.TYPE_ENUM),
        "number_value": (2, F.TYPE_DOUBLE),
        "string_value": (3, F.TYPE_STRING),
        "bool_value": (4, F.TYPE_BOOL),
        "struct_value": (5, F.TYPE_MESSAGE),
        "list_value": (6, F.TYPE_MESSAGE),
    }
    assert _fields(struct_pb2.ListValue.DESCRIPTOR) == {"values": (1, F.TYPE_MESSAGE)}
    assert _fields(timestamp_pb2.Timestamp.DESCRIPTOR) == {
        "seconds": (1, F.TYPE_INT64),
        "nanos": (2, F.TYPE_INT32),
    }
    assert max(pb.EventKind.values()) < 0x80
    assert _fields(pb.RunWorkflowResponse.DESCRIPTOR) == {"run": (1, F.TYPE_MESSAGE)}


@pytest.mark.parametrize(
    "n",
    [
        0,
        1,
        127,
        128,
        300,
        16383,
        16384,
        2**21 - 1,
        2**21,
        2**28 - 1,
        2**28,
        2**35 - 1,
        2**35,
        2**62,
    ],
)
def test_varints_are_protobuf_s(n: int) -> None:
    # proto3 leaves a zero out of the message; a field's value is parsed all the same.
    assert pb.WorkflowEvent.FromString(b"\x10" + wire.varint(n)).sequence == n
    if n:
        assert b"\x10" + wire.varint(n) == pb.WorkflowEvent(sequence=n).SerializeToString()


def _expected(
    run_id: str,
    sequence: int,
    kind: int,
    type_name: str,
    step: str | None,
    data: dict[str, Any] | None,
    time_ns: int,
) -> pb.WorkflowEvent:
    event = pb.WorkflowEvent(run_id=run_id, sequence=sequence, kind=kind, type=type_name)
    if step:
        event.step = step
    if data:
        event.data.update(data)
    event.time.seconds, event.time.nanos = divmod(time_ns, 1_000_000_000)
    return event


def _text(rng: random.Random) -> str:
    alphabet = ["a", "Z", "0", " ", "é", "ß", "中", "😀", "\n", '"', "\x00"]
    # Long enough, at times, that lengths need two bytes.
    size = rng.choice([0, 1, 5, 60, 130, 300])
    return "".join(rng.choice(alphabet) for _ in range(size))


def _json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return rng.choice([0, 1, -1, 57, 2**31, -(2**53), 2**53])
    if choice == 1:
        return rng.choice([0.0, -0.0, 0.5, -1e-300, 1e300, 3.141592653589793])
    if choice == 2:
        return _text(rng)
    if choice == 3:
        return rng.random() < 0.5
    if choice == 4:
        return None
    if choice == 5:
        return rng.randrange(-(10**6), 10**6)
    if choice in (6, 7):
        return {_text(rng) or "k": _json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_random_events_parse_to_what_the_protobuf_api_builds() -> None:
    rng = random.Random(20261125)
    kinds = list(pb.EventKind.values())
    for _ in range(2000):
        run_id = rng.choice(["", "0195f3c2a9b87c6d8e9f0a1b2c3d4e5f", _text(rng)])
        sequence = rng.choice([1, 2, 127, 128, 5000, 2**40])
        kind = rng.choice(kinds)
        type_name = rng.choice(["", "StepStartedEvent", _text(rng)])
        step = rng.choice([None, "", "tick", _text(rng)])
        data = rng.choice(
            [
                None,
                {},
                {"attempt": 1, "invocation": rng.randrange(10**6)},
                {_text(rng) or "k": _json(rng) for _ in range(rng.randrange(1, 6))},
            ]
        )
        time_ns = rng.choice([0, 1_764_000_000 * 10**9, rng.randrange(2**62)])
        encoded = wire.encode_event(
            wire.run_id_field(run_id),
            sequence,
            kind,
            type_name,
            step,
            wire.data_field(data),
            time_ns,
        )
        expected = _expected(run_id, sequence, kind, type_name, step, data, time_ns)
        assert pb.WorkflowEvent.FromString(encoded) == expected
        assert wire.read_header(encoded) == (sequence, kind)
        assert wire.read_header(expected.SerializeToString()) == (sequence, kind)


def test_a_lone_surrogate_is_replaced_rather_than_failing_the_event() -> None:
    encoded = wire.encode_event(b"", 1, 1, "T", None, wire.data_field({"text": "a\ud800b"}), 0)
    assert pb.WorkflowEvent.FromString(encoded).data["text"] == "a?b"


def test_data_that_is_not_json_compatible_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="cannot put a set in event data"):
        wire.data_field({"s": {1, 2}})


def test_step_data_is_the_data_field_of_its_dict() -> None:
    rng = random.Random(7)
    for _ in range(500):
        attempt, invocation = rng.choice([1, 2, 7]), rng.choice([1, 2, 127, 128, 10**6])
        assert wire.step_data(attempt, invocation) == wire.data_field(
            {"attempt": attempt, "invocation": invocation}
        )
        duration = rng.choice([0.0, 0.004, 12.5, 3600000.0])
        finished = {"attempt": attempt, "invocation": invocation, "duration_ms": duration}
        assert wire.step_data(attempt, invocation, duration) == wire.data_field(finished)
        error = _text(rng)
        assert wire.step_data(attempt, invocation, duration, error) == wire.data_field(
            {**finished, "error": error}
        )
    field = wire.step_data(1, 3, 0.25, "KeyError: 'x'")
    event = pb.WorkflowEvent.FromString(wire.encode_event(b"", 1, 1, "", None, field, 0))
    assert dict(event.data) == {
        "attempt": 1.0,
        "invocation": 3.0,
        "duration_ms": 0.25,
        "error": "KeyError: 'x'",
    }


def test_a_step_events_data_given_as_step_data_arguments_is_encoded_with_the_event() -> None:
    """``_emit`` hands a step's start and finish over as ``step_data``'s arguments; the
    event's bytes are those of the encoded field, lazily or not."""
    for args in [(1, 3, None, None), (2, 128, 0.25, None), (1, 1, 12.5, "KeyError: 'x'")]:
        fields = (wire.run_id_field("r1"), 5, pb.EVENT_KIND_STEP_FINISHED, "E", "s", args, 7)
        expected = wire.encode_event(*fields[:5], wire.step_data(*args), 7)
        assert wire.encode_event(*fields) == expected
        assert wire.LoggedEvent.lazy(fields).wire == expected


def test_a_run_response_parses_to_the_response_holding_the_run() -> None:
    run = pb.Run(run_id="r1", workflow="echo", status=pb.RUN_STATUS_SUCCEEDED, last_sequence=4)
    run.input.update({"message": "é" * 100})  # a run longer than one varint byte
    run.result.string_value = "é" * 100
    run.labels["team"] = "a"
    sent = wire.run_response(run.SerializeToString())
    assert pb.RunWorkflowResponse.FromString(sent) == pb.RunWorkflowResponse(run=run)


def test_a_serialized_struct_makes_the_data_field_of_its_dict() -> None:
    """RUN_STARTED carries the request's input Struct as it was serialized: the same event
    data as the dict the service converts that Struct to."""
    rng = random.Random(1125)
    for _ in range(500):
        data = rng.choice([{}, {_text(rng) or "k": _json(rng) for _ in range(rng.randrange(1, 6))}])
        body = struct_pb2.Struct()
        body.update(data)
        from_bytes = wire.struct_field(body.SerializeToString(deterministic=True))
        from_dict = wire.data_field(convert.struct_to_dict(body))
        assert pb.WorkflowEvent.FromString(from_bytes) == pb.WorkflowEvent.FromString(from_dict)
        assert (from_bytes == b"") == (from_dict == b"")


def test_a_result_field_is_the_data_field_of_the_result() -> None:
    """RUN_SUCCEEDED's data is made from the result's serialized Value: the same event data
    as ``{"result": result}`` encoded from the JSON form."""
    rng = random.Random(2511)
    for result in [None, "", 0, True, [], {}, "x" * 300, *(_json(rng) for _ in range(500))]:
        from_value = wire.result_field(convert.to_value(result).SerializeToString())
        from_dict = wire.data_field({"result": result})
        assert pb.WorkflowEvent.FromString(from_value) == pb.WorkflowEvent.FromString(from_dict)


def _fields_of(sequence: int) -> wire.EventFields:
    data = wire.data_field({"n": sequence})
    return (
        wire.run_id_field("r1"),
        sequence,
        4,
        "Progress",
        "tick",
        data,
        1_764_000_000 + sequence,
    )


def test_a_lazy_event_is_encoded_once_when_first_read() -> None:
    fields = _fields_of(3)
    event = wire.LoggedEvent.lazy(fields)
    assert (event.sequence, event.kind) == (3, 4)
    first = event.wire
    assert first == wire.encode_event(*fields)
    assert event.wire is first  # kept, not encoded again
    plain = wire.LoggedEvent(3, 4, first)
    assert plain.wire is first


def test_threads_reading_a_lazy_event_at_once_get_the_same_bytes() -> None:
    events = [wire.LoggedEvent.lazy(_fields_of(n)) for n in range(1, 20_001)]
    seen: list[list[bytes]] = [[], []]

    def read(out: list[bytes]) -> None:
        out.extend(e.wire for e in events)

    threads = [threading.Thread(target=read, args=(out,)) for out in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = [wire.encode_event(*_fields_of(n)) for n in range(1, 20_001)]
    assert seen[0] == expected and seen[1] == expected
