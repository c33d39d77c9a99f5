"""The per-key slot counter on its own, without a server."""

import pytest

from service.concurrency import KeyLimiter


def test_slots_pass_to_waiters_in_order_and_free_when_nobody_waits() -> None:
    keys: KeyLimiter[str] = KeyLimiter(1)
    assert keys.try_acquire("k")
    assert not keys.try_acquire("k")
    assert keys.wait("k", "a") == 0
    assert keys.wait("k", "b") == 1
    assert keys.try_acquire("other")
    assert keys.release("k") == "a"  # the slot passes on: still one running
    assert not keys.try_acquire("k")
    assert keys.remove("k", "b")
    assert not keys.remove("k", "b")
    assert keys.release("k") is None
    assert keys.running == {"other": 1} and keys.waiting == {}


def test_a_newcomer_never_overtakes_the_queue() -> None:
    keys: KeyLimiter[str] = KeyLimiter(2)
    assert keys.try_acquire("k") and keys.try_acquire("k")
    keys.wait("k", "first")
    keys.force_acquire("k")  # e.g. a run resumed after a restart: 3 running, limit 2
    assert keys.release("k") is None  # back to the limit: nobody starts yet
    assert not keys.try_acquire("k")
    assert keys.release("k") == "first"
    assert keys.waiting == {}


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        KeyLimiter(0)
