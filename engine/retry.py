"""Retry policies for ``@step(retry_policy=...)``, compatible with llama-index-workflows'."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class RetryPolicy(Protocol):
    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up.

        ``attempts`` counts the failures so far (1 after the first failure);
        ``elapsed_time`` is the time since the step's first attempt started.
        """
        ...


@dataclass(frozen=True, slots=True)
class ConstantDelayRetryPolicy:
    """Retry after the same ``delay`` each time, for at most ``maximum_attempts`` attempts."""

    maximum_attempts: int = 3
    delay: float = 5.0

    def __post_init__(self) -> None:
        _check(self.maximum_attempts, self.delay)

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        return self.delay if attempts < self.maximum_attempts else None


@dataclass(frozen=True, slots=True)
class ExponentialBackoffRetryPolicy:
    """Retry after ``initial_delay * multiplier ** (attempts - 1)``, capped at ``max_delay``.

    With ``jitter`` the delay is drawn uniformly from [0, computed delay] ("full jitter"),
    which spreads retries of many runs that failed together.
    """

    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 30.0
    maximum_attempts: int = 5
    jitter: bool = False

    def __post_init__(self) -> None:
        _check(self.maximum_attempts, self.initial_delay)
        if self.multiplier < 1 or self.max_delay < 0:
            raise ValueError("multiplier must be >= 1 and max_delay >= 0")

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        if attempts >= self.maximum_attempts:
            return None
        delay = min(self.initial_delay * self.multiplier ** (attempts - 1), self.max_delay)
        return random.uniform(0, delay) if self.jitter else delay


def _check(maximum_attempts: int, delay: float) -> None:
    if maximum_attempts < 1:
        raise ValueError("maximum_attempts must be at least 1")
    if delay < 0:
        raise ValueError("delay must not be negative")
