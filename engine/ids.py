"""Run ids: time-ordered, so that ids made later sort later."""

from __future__ import annotations

import collections
import os
import time

_RAND_B = (1 << 62) - 1
_BATCH = 256  # ids' worth of randomness read from the OS at a time

# Random 80-bit numbers read from the OS a batch at a time: each os.urandom is a system
# call, made with the GIL let go, so one per id cost every run start a trip to the kernel
# and a chance to lose the GIL to another thread. deque.popleft is atomic, so threads never
# share a number; a forked child drops its parent's.
_pool: collections.deque[int] = collections.deque()
os.register_at_fork(after_in_child=_pool.clear)


def _refill() -> None:
    data = os.urandom(10 * _BATCH)
    _pool.extend(int.from_bytes(data[i : i + 10], "big") for i in range(0, len(data), 10))


def new_run_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: the time in milliseconds, then 74 random bits.

    Stores index runs by id; ids that grow with time land at the end of those indexes
    instead of on a random page each."""
    ms = time.time_ns() // 1_000_000
    try:
        rand = _pool.popleft()
    except IndexError:
        _refill()
        rand = _pool.popleft()
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76  # version 7
        | (rand >> 62 & 0xFFF) << 64
        | 0b10 << 62  # the RFC's variant
        | rand & _RAND_B
    )
    return f"{value:032x}"
