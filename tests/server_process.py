"""The server as its users start it: ``python -m service`` in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(rb"event=listening address=\S+:(\d+)")


def _listening_port(line: bytes) -> int | None:
    """The port of the start-up line, in either log format; None for other lines."""
    if line.startswith(b"{"):
        entry = json.loads(line)
        if entry.get("event") == "listening":
            return int(entry["address"].rsplit(":", 1)[1])
        return None
    m = _LISTENING.search(line)
    return int(m.group(1)) if m else None


async def launch_server(
    *options: str,
    port: int = 0,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = 30,
) -> tuple[asyncio.subprocess.Process, int]:
    """``python -m service --port PORT *options`` logging at INFO, once it listens: the
    process and the port it listens on. Its log stays on ``proc.stderr`` for the caller,
    who must keep reading it (a full pipe would block the server)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "--port",
        str(port),
        *options,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "WORKFLOW_LOG_LEVEL": "INFO"},
        preexec_fn=preexec_fn,
    )
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), timeout)
        assert line, "the server exited before listening"
        bound = _listening_port(line)
        if bound is not None:
            return proc, bound
