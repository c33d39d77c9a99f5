"""When durable runs save their engine checkpoints: soon after a step that took a while,
otherwise within ``delay`` of a completed step.

A checkpoint encodes the run's whole context (state store, queued events, collect buffers),
so saving one after every step would cost a short run more than its steps do, and a run
that ends before its checkpoint is due needs none: its committed events say how it ended.
One checkpoint covers every step a run completed since the last. What a crash costs is
bounded either way: the completed steps a checkpoint does not cover yet ran for less than
``delay`` in all, and run again on resume, as a step that was in flight does (steps are
at-least-once). A run whose unsaved steps took ``delay`` or longer in all (one long step,
or many short ones) is saved on the next loop turn.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Protocol

CHECKPOINT_DELAY = 0.5  # seconds: see the module's docstring
_TICK = 0.002  # checkpoints due this close together are saved by one timer


class Checkpointed(Protocol):
    run_id: str
    checkpoint_due: bool  # a save is scheduled
    unsaved: float  # seconds its steps ran since the last save

    def save_checkpoint(self) -> None:
        """Save now (clearing ``checkpoint_due`` and ``unsaved``), unless the run ended."""


class CheckpointSchedule:
    """Saves each run's checkpoint ``delay`` after the first step it completed since its
    last one, or on the next loop turn once its unsaved steps ran ``delay`` in all. The
    delay is the same for every run, so the runs fall due in the order they were added,
    and one timer, set for the first of them, serves them all.

    A run waiting for its turn is found again by its id in ``runs`` (the runs going): one
    that ended meanwhile, as most do, is neither saved nor kept alive until then."""

    def __init__(self, runs: Mapping[str, Checkpointed], delay: float = CHECKPOINT_DELAY) -> None:
        if delay < 0:
            raise ValueError(f"checkpoint delay must be at least 0, got {delay}")
        self.delay = delay
        self._runs = runs
        self._due: deque[tuple[float, str]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._soon: dict[Checkpointed, None] = {}  # saved on the next loop turn, in order

    def add(self, run: Checkpointed) -> None:
        """A step of ``run`` completed (its time already counted in ``run.unsaved``)."""
        if run.unsaved >= self.delay:
            # On the next loop turn, covering every step of the run completed in this one.
            # A save already due later then finds the run saved and skips it.
            if not self._soon:
                asyncio.get_running_loop().call_soon(self._save_soon)
            self._soon[run] = None
            run.checkpoint_due = True
            return
        if run.checkpoint_due:
            return
        run.checkpoint_due = True
        loop = asyncio.get_running_loop()
        when = loop.time() + self.delay
        self._due.append((when, run.run_id))
        if self._timer is None:
            self._timer = loop.call_at(when, self._fire)

    def _save_soon(self) -> None:
        runs, self._soon = self._soon, {}
        for run in runs:
            if run.checkpoint_due:
                run.save_checkpoint()

    def _fire(self) -> None:
        self._timer = None
        due = self._due
        runs = self._runs
        loop = asyncio.get_running_loop()
        until = loop.time() + _TICK
        while due and due[0][0] <= until:
            run = runs.get(due.popleft()[1])
            if run is not None and run.checkpoint_due:  # not saved meanwhile (SendEvent's)
                run.save_checkpoint()
        if due:
            self._timer = loop.call_at(due[0][0], self._fire)

    def cancel(self) -> None:
        """Save none of the checkpoints still due (the caller saves what it needs)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, run_id in self._due:
            going = self._runs.get(run_id)
            if going is not None:
                going.checkpoint_due = False
        for run in self._soon:
            run.checkpoint_due = False
        self._due.clear()
        self._soon.clear()
