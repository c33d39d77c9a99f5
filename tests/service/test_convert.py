"""Conversions set by hand for speed give what protobuf's own json_format gives."""

import math
import time
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from service import convert

RESULTS: list[Any] = [
    "hi",
    "",
    "naïve ✓",
    0,
    3,
    -7,
    2.5,
    2**60,
    True,
    False,
    None,
    {},
    [],
    {"a": 1, "b": "x", "c": True, "d": None, "e": 1.5},
    {"nested": {"list": [1, "two", None, {"k": [True]}]}, "empty": {}, "none": []},
    [1, "a", None, [2, [3]], {"k": "v"}],
]


@pytest.mark.parametrize("result", RESULTS, ids=repr)
def test_a_result_value_is_json_formats(result: Any) -> None:
    expected = struct_pb2.Value()
    json_format.ParseDict(result, expected)
    got = convert.to_value(result)
    assert got == expected
    assert got.WhichOneof("kind") == expected.WhichOneof("kind")
    assert json_format.MessageToDict(got) == json_format.MessageToDict(expected)


def test_a_result_that_is_not_json_is_converted_first() -> None:
    got = convert.to_value({"when": (1, 2), "what": b"raw"})
    assert json_format.MessageToDict(got) == {"when": [1, 2], "what": "raw"}
    assert convert.to_value(math.inf).number_value == math.inf  # as json_format sets it


def test_stamp_sets_now() -> None:
    before = time.time_ns()
    stamp = timestamp_pb2.Timestamp()
    convert.stamp(stamp)
    after = time.time_ns()
    assert before <= stamp.ToNanoseconds() <= after
    assert 0 <= stamp.nanos < 1_000_000_000
