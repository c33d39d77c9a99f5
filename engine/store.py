"""A run's shared state: ``ctx.store``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

_MISSING: Any = object()


class StateStore:
    """Key/value state shared by every step of one run.

    Keys may be dotted paths ("user.name") into nested dicts. ``get``/``set`` are atomic on
    their own; ``edit()`` holds the store for a read-modify-write that other steps (including
    other workers of the same step) cannot interleave with. If the ``edit()`` block raises,
    the top-level keys are restored to what they were when it began.
    """

    __slots__ = ("_lock", "_state")

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self._state: dict[str, Any] = state if state is not None else {}
        self._lock: asyncio.Lock | None = None

    async def get(self, key: str, default: Any = _MISSING) -> Any:
        if self._lock is not None and self._lock.locked():
            async with self._lock:
                return self._get(key, default)
        return self._get(key, default)

    async def set(self, key: str, value: Any) -> None:
        if self._lock is not None and self._lock.locked():
            async with self._lock:
                self._set(key, value)
        else:
            self._set(key, value)

    @asynccontextmanager
    async def edit(self) -> AsyncIterator[dict[str, Any]]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            before = dict(self._state)
            try:
                yield self._state
            except BaseException:
                self._state.clear()
                self._state.update(before)
                raise

    # llama-index-workflows spells it edit_state().
    edit_state = edit

    def to_dict(self) -> dict[str, Any]:
        """The live state (not a copy); used for checkpoints."""
        return self._state

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
