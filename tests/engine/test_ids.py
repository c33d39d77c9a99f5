"""Run ids: UUIDv7 in 32 hex digits, later ids sorting later."""

import time
import uuid

from engine.ids import new_run_id


def test_run_ids_are_uuid7_and_sort_by_time() -> None:
    make = new_run_id
    before = time.time_ns() // 1_000_000
    first = make()
    after = time.time_ns() // 1_000_000
    assert len(first) == 32 and first == first.lower()
    parsed = uuid.UUID(first)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert before <= int(first[:12], 16) <= after  # the first 48 bits: milliseconds
    ids = []
    for _ in range(5):
        ids.append(make())
        time.sleep(0.002)
    assert ids == sorted(ids)
    assert len({make() for _ in range(10_000)}) == 10_000
