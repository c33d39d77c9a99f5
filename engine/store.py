"""A run's shared state: ``ctx.store``."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

_MISSING: Any = object()


class StateStore:
    """Key/value state shared by every step of one run.

    Keys may be dotted paths ("user.name") into nested dicts. ``get``/``set`` are atomic on
    their own; ``edit()`` holds the store for a read-modify-write that other steps (including
    other workers of the same step) cannot interleave with, while ``get``/``set`` inside the
    block itself go straight through. If the block raises, the state is restored to what it
    was when the block began, and a checkpoint taken during the block sees that state too.
    """

    __slots__ = ("_before", "_editor", "_lock", "_state")

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self._state: dict[str, Any] = state if state is not None else {}
        self._lock: asyncio.Lock | None = None
        self._editor: asyncio.Task[Any] | None = None  # the task inside edit(), if any
        self._before: dict[str, Any] | None = None  # committed state during an edit

    def _held_by_other(self) -> bool:
        return (
            self._lock is not None
            and self._lock.locked()
            and self._editor is not asyncio.current_task()
        )

    async def get(self, key: str, default: Any = _MISSING) -> Any:
        if self._held_by_other():
            assert self._lock is not None
            async with self._lock:
                return self._get(key, default)
        return self._get(key, default)

    async def set(self, key: str, value: Any) -> None:
        if self._held_by_other():
            assert self._lock is not None
            async with self._lock:
                self._set(key, value)
        else:
            self._set(key, value)

    @asynccontextmanager
    async def edit(self) -> AsyncIterator[dict[str, Any]]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self._before = _snapshot(self._state)
            self._editor = asyncio.current_task()
            try:
                yield self._state
            except BaseException:
                self._state.clear()
                self._state.update(self._before)
                raise
            finally:
                self._before = None
                self._editor = None

    # llama-index-workflows spells it edit_state().
    edit_state = edit

    def to_dict(self) -> dict[str, Any]:
        """The committed state (not a copy); used for checkpoints."""
        return self._before if self._before is not None else self._state

    def _get(self, key: str, default: Any) -> Any:
        node: Any = self._state
        for part in key.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif default is _MISSING:
                raise KeyError(f"state has no key '{key}'")
            else:
                return default
        return node

    def _set(self, key: str, value: Any) -> None:
        *parents, last = key.split(".")
        node = self._state
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = value


def _snapshot(state: dict[str, Any]) -> dict[str, Any]:
    try:
        return copy.deepcopy(state)
    except Exception:  # values that cannot be copied: keep the top level at least
        return dict(state)
