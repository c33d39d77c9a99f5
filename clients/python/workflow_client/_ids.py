"""Run ids the client picks, so that retrying a start can never start a second run."""

from __future__ import annotations

import os
import time


def new_run_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: the time in milliseconds, then 74 random bits.

    Ids made later sort later, which keeps the server's run index appending at its end."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (rand >> 62 & 0xFFF) << 64
        | 0b10 << 62
        | rand & ((1 << 62) - 1)
    )
    return f"{value:032x}"
