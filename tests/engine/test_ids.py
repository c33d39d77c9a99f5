"""Run ids: UUIDv7 in 32 hex digits, later ids sorting later."""

import os
import threading
import time
import uuid

import pytest

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


def _random_part(run_id: str) -> str:
    return run_id[13:]  # past the milliseconds and the version digit


def test_threads_making_ids_at_once_never_share_one() -> None:
    ids: list[list[str]] = [[] for _ in range(4)]

    def make_many(out: list[str]) -> None:
        for _ in range(5_000):
            out.append(new_run_id())

    threads = [threading.Thread(target=make_many, args=(out,)) for out in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [_random_part(i) for out in ids for i in out]
    assert len(set(every)) == 20_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_its_parents_randomness() -> None:
    new_run_id()  # the parent now holds randomness read ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report ids, then leave without running pytest's teardown
        try:
            os.write(write, " ".join(new_run_id() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read().split()
    os.waitpid(pid, 0)
    parent = [new_run_id() for _ in range(50)]
    assert len(child) == 50
    assert not {_random_part(i) for i in child} & {_random_part(i) for i in parent}
