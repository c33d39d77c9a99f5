"""How ``wf`` shows things: JSON documents, human-readable text, and the live status line."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any, TextIO

from ._types import Event, Run, WorkflowInfo

# Terminal event kind -> the run status it ends in.
ENDING = {
    "RUN_SUCCEEDED": "SUCCEEDED",
    "RUN_FAILED": "FAILED",
    "RUN_CANCELLED": "CANCELLED",
    "RUN_TIMED_OUT": "TIMED_OUT",
}

# ---- JSON ----------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """``value`` with integral floats as ints: protobuf's Struct carries every number as a
    double, so a workflow's ``5`` arrives as ``5.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _timestamp(t: datetime | None) -> str | None:
    """ISO 8601 in UTC (the client's datetimes are naive UTC)."""
    if t is None:
        return None
    return t.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def run_doc(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "status": run.status,
        "input": plain(run.input),
        "result": plain(run.result),
        "error": dataclasses.asdict(run.error) if run.error else None,
        "created_at": _timestamp(run.created_at),
        "started_at": _timestamp(run.started_at),
        "ended_at": _timestamp(run.ended_at),
        "last_sequence": run.last_sequence,
        "labels": run.labels,
    }


def event_doc(ev: Event) -> dict[str, Any]:
    return {
        "run_id": ev.run_id,
        "sequence": ev.sequence,
        "kind": ev.kind,
        "type": ev.type,
        "step": ev.step,
        "data": plain(ev.data),
        "time": _timestamp(ev.time),
    }


def workflow_doc(w: WorkflowInfo) -> dict[str, Any]:
    return {
        "name": w.name,
        "description": w.description,
        "input_schema": plain(w.input_schema),
        "accepted_events": plain(w.accepted_events),
        "steps": w.steps,
    }


def dumps(doc: Any, *, indent: int | None = 2) -> str:
    if indent is None:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(doc, ensure_ascii=False, indent=indent)


def compact(value: Any) -> str:
    return json.dumps(plain(value), ensure_ascii=False, separators=(",", ":"))


def result_text(result: Any) -> str:
    """A run's result for people: a string as it is, anything else as JSON."""
    return result if isinstance(result, str) else dumps(plain(result))


# ---- text ----------------------------------------------------------------------------------


def _local(t: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return t.replace(tzinfo=UTC).astimezone().strftime(fmt) if t else "-"


def _seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds():.3f}s"


def event_line(ev: Event) -> str:
    """One line per event: time, sequence, kind, step, type, compact data."""
    clock = ev.time.replace(tzinfo=UTC).astimezone().strftime("%H:%M:%S.%f")[:-3]
    data = compact(ev.data) if ev.data else ""
    return (
        f"{clock} {ev.sequence:>4} {ev.kind:<14} {ev.step or '-':<10} {ev.type or '-':<16} {data}"
    )


def ending_message(ev: Event) -> str | None:
    """What went wrong, for a terminal event of a run that did not succeed."""
    status = ENDING.get(ev.kind)
    if status is None or status == "SUCCEEDED":
        return None
    what = ": ".join(str(ev.data[k]) for k in ("type", "message") if ev.data.get(k))
    step = ev.data.get("step")
    if step and f"'{step}'" not in what:
        what += f" (step {step})"
    return f"run {ev.run_id} ended {status}" + (f": {what}" if what else "")


def run_text(run: Run) -> str:
    rows: list[tuple[str, str]] = [
        ("run_id", run.run_id),
        ("workflow", run.workflow),
        ("status", run.status),
        ("created", _local(run.created_at)),
        ("started", _local(run.started_at)),
        ("ended", _local(run.ended_at)),
        ("duration", _seconds(run.started_at or run.created_at, run.ended_at)),
        ("events", str(run.last_sequence)),
    ]
    if run.labels:
        rows.append(("labels", ",".join(f"{k}={v}" for k, v in sorted(run.labels.items()))))
    rows.append(("input", compact(run.input)))
    if run.status == "SUCCEEDED":
        rows.append(("result", compact(run.result)))
    if run.error is not None:
        err = f"{run.error.type}: {run.error.message}"
        if run.error.step:
            err += f" (step {run.error.step})"
        rows.append(("error", err))
    return "\n".join(f"{k + ':':<10} {v}" for k, v in rows)


def runs_table(runs: list[Run]) -> str:
    if not runs:
        return "(no runs)"
    header = ("RUN_ID", "WORKFLOW", "STATUS", "CREATED", "DURATION", "LABELS")
    rows = [header] + [
        (
            r.run_id,
            r.workflow,
            r.status,
            _local(r.created_at),
            _seconds(r.started_at or r.created_at, r.ended_at),
            ",".join(f"{k}={v}" for k, v in sorted(r.labels.items())),
        )
        for r in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _schema_type(s: dict[str, Any]) -> str:
    if "$ref" in s:
        return str(s["$ref"]).rsplit("/", 1)[-1]
    if "enum" in s:
        return "|".join(compact(v) for v in s["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in s:
            return "|".join(_schema_type(sub) for sub in s[key])
    t = s.get("type", "any")
    if t == "array" and isinstance(s.get("items"), dict):
        return f"array of {_schema_type(s['items'])}"
    return "|".join(t) if isinstance(t, list) else str(t)


def schema_fields(schema: dict[str, Any]) -> list[str]:
    """One description per field of an object schema: ``name: type, required, ... - text``."""
    required = set(schema.get("required", ()))
    out = []
    for name, s in schema.get("properties", {}).items():
        parts = [f"{name}: {_schema_type(s)}"]
        if name in required:
            parts.append("required")
        if "default" in s:
            parts.append(f"default {compact(s['default'])}")
        lo, hi = s.get("minimum"), s.get("maximum")
        if lo is not None or hi is not None:
            lo_text = "" if lo is None else compact(lo)
            hi_text = "" if hi is None else compact(hi)
            parts.append(f"{lo_text}..{hi_text}")
        text = ", ".join(parts)
        if s.get("description"):
            text += f" - {s['description']}"
        out.append(text)
    return out


def workflows_text(workflows: list[WorkflowInfo]) -> str:
    if not workflows:
        return "(no workflows)"
    width = max(len(w.name) for w in workflows)
    lines = []
    for w in workflows:
        summary = " ".join(w.description.split("\n\n", 1)[0].split())
        lines.append(f"{w.name:<{width}}  {summary}".rstrip())
        pad = " " * (width + 2)
        fields = schema_fields(w.input_schema)
        lines += [f"{pad}  input  {f}" for f in fields] or [f"{pad}  input  (none)"]
        for type_, schema in w.accepted_events.items():
            lines.append(f"{pad}  event  {type_}({'; '.join(schema_fields(schema))})")
    return "\n".join(lines)


# ---- live display --------------------------------------------------------------------------

_CLEAR = "\r\x1b[K"
_SPINNER = "-\\|/"


class Display:
    """Prints a run's events as they come, one line (or JSON line) each, flushed at once.
    With ``live`` (a terminal) it keeps a status line under them that updates while the run
    goes: elapsed time, status, events so far, steps running, the latest event.

    ``show_events=False`` keeps only the status line (``wf run`` without ``--follow``);
    ``header`` prints ``run ID`` before the first event (``wf run --follow``).
    """

    def __init__(
        self, out: TextIO, *, json_lines: bool, live: bool, show_events: bool, header: bool
    ) -> None:
        self.out = out
        self.json_lines = json_lines
        self.live = live
        self.show_events = show_events
        self.header = header and show_events and not json_lines
        self.run_id = ""
        self.status = "STARTING"
        self.count = 0
        self.last = ""
        self.running: Counter[str] = Counter()
        self._began = time.monotonic()
        self._frame = 0
        self._ticker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Display:
        if self.live:
            self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self.live:
            self.out.write(_CLEAR)
            self.out.flush()

    def event(self, ev: Event) -> None:
        lines = []
        if self.header and not self.count:
            lines.append(f"run {ev.run_id}")
        self._track(ev)
        if self.show_events:
            lines.append(dumps(event_doc(ev), indent=None) if self.json_lines else event_line(ev))
        text = "".join(line + "\n" for line in lines)
        if self.live:  # the status line (which begins by clearing the line) goes under
            text = (_CLEAR + text if text else "") + self._status_line()
        if text:
            self.out.write(text)
            self.out.flush()

    def _track(self, ev: Event) -> None:
        self.run_id = ev.run_id
        self.count += 1
        self.last = f"{ev.kind} {ev.type}".strip()
        if ev.kind == "STEP_STARTED":
            self.running[ev.step] += 1
        elif ev.kind == "STEP_FINISHED":
            self.running[ev.step] -= 1
            if self.running[ev.step] <= 0:
                del self.running[ev.step]
        if ev.terminal:
            self.status = ENDING[ev.kind]
            self.running.clear()
        elif ev.kind == "INPUT_REQUIRED":
            self.status = "WAITING_FOR_INPUT"
        else:
            self.status = "RUNNING"

    def _status_line(self) -> str:
        self._frame += 1
        parts = [
            _SPINNER[self._frame % len(_SPINNER)],
            f"{time.monotonic() - self._began:.1f}s",
            self.status,
            f"{self.count} events",
        ]
        if self.running:
            steps = ", ".join(f"{s} x{n}" if n > 1 else s for s, n in self.running.items())
            parts.append(f"steps: {steps}")
        if self.last:
            parts.append(f"last: {self.last}")
        if self.run_id:
            parts.append(f"run {self.run_id}")
        text = "  ".join(parts)
        width = max(shutil.get_terminal_size().columns - 1, 10)
        return _CLEAR + (text if len(text) <= width else text[: width - 3] + "...")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            self.out.write(self._status_line())
            self.out.flush()
