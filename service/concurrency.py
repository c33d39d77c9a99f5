"""Per-key concurrency limits: at most N running runs share a ``concurrency_key`` label.

Runs beyond the limit either wait in arrival order for a slot of their key or are refused,
by setting. A slot passes straight from a run that ends to the next one waiting, so a
newcomer can never overtake the queue.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import Generic, TypeVar

CONCURRENCY_KEY_LABEL = "concurrency_key"

T = TypeVar("T")


class Overflow(StrEnum):
    QUEUE = "queue"  # extra runs wait, in order, as PENDING
    REJECT = "reject"  # extra runs are refused with RESOURCE_EXHAUSTED


class KeyLimiter(Generic[T]):
    """Counts running holders per key and keeps the waiting ones in order."""

    __slots__ = ("limit", "running", "waiting")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a per-key limit must be at least 1")
        self.limit = limit
        self.running: dict[str, int] = {}
        self.waiting: dict[str, deque[T]] = {}

    def try_acquire(self, key: str) -> bool:
        """Take a slot if one is free and nobody waits for it."""
        n = self.running.get(key, 0)
        if n >= self.limit or self.waiting.get(key):
            return False
        self.running[key] = n + 1
        return True

    def force_acquire(self, key: str) -> None:
        """Count a holder whatever the limit (a run that was already going before a restart)."""
        self.running[key] = self.running.get(key, 0) + 1

    def wait(self, key: str, item: T) -> int:
        """Queue ``item`` for ``key``; returns how many wait ahead of it."""
        queue = self.waiting.setdefault(key, deque())
        queue.append(item)
        return len(queue) - 1

    def remove(self, key: str, item: T) -> bool:
        """Take a waiting item out of the queue (it was cancelled); False if not waiting."""
        queue = self.waiting.get(key)
        if not queue or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self.waiting[key]
        return True

    def release(self, key: str) -> T | None:
        """Give a slot back; returns the waiting item that now holds it, if any."""
        queue = self.waiting.get(key)
        if queue and self.running.get(key, 0) <= self.limit:
            item = queue.popleft()
            if not queue:
                del self.waiting[key]
            return item  # the slot passes to it: the running count stays the same
        n = self.running.get(key, 0) - 1
        if n > 0:
            self.running[key] = n
        else:
            self.running.pop(key, None)
        return None
