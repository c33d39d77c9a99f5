"""Run ids: time-ordered, so that ids made later sort later."""

from __future__ import annotations

import os
import time

_RAND_B = (1 << 62) - 1


def new_run_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: the time in milliseconds, then 74 random bits.

    Stores index runs by id; ids that grow with time land at the end of those indexes
    instead of on a random page each."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76  # version 7
        | (rand >> 62 & 0xFFF) << 64
        | 0b10 << 62  # the RFC's variant
        | rand & _RAND_B
    )
    return f"{value:032x}"
