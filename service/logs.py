"""Structured log lines: ``key=value`` pairs (the default) or one JSON object per line.

Service code logs with :func:`event`, naming what happened and the fields that go with it;
the formatter installed by :func:`configure` decides how the line looks. Lines from other
libraries keep their message under ``message``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

FORMATS = ("keyvalue", "json")

_FIELDS = "wf_fields"  # the LogRecord attribute that carries an event's fields


def event(
    logger: logging.Logger,
    level: int,
    name: str,
    *,
    exc_info: bool | BaseException = False,
    **fields: Any,
) -> None:
    """Log the event ``name`` with ``fields``; fields that are None are left out.
    ``exc_info``: add this exception, or (True) the one being handled."""
    if logger.isEnabledFor(level):
        logger.log(level, name, exc_info=exc_info, extra={_FIELDS: fields})


def caller_trace_id(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The trace id of a W3C ``traceparent`` in the request metadata, if it has a valid
    one: 32 lowercase hex digits, not all zero."""
    for key, value in metadata or ():
        if key == "traceparent":
            parts = str(value).split("-")
            if len(parts) < 4 or len(parts[1]) != 32:
                return None
            trace_id = parts[1]
            try:
                if int(trace_id, 16) == 0 or trace_id != trace_id.lower():
                    return None
            except ValueError:
                return None
            return trace_id
    return None


def _timestamp(record: logging.LogRecord) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{whole}.{int(record.msecs):03d}Z"


def _plain(value: Any) -> str:
    """A value as it appears after ``key=``: quoted (JSON string) when it would otherwise
    be ambiguous."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if not text or any(c in text for c in ' ="\\\n\t'):
        return json.dumps(text)
    return text


class KeyValueFormatter(logging.Formatter):
    """``time=... level=... logger=... event=... key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        head = f"time={_timestamp(record)} level={record.levelname} logger={record.name}"
        fields: dict[str, Any] | None = getattr(record, _FIELDS, None)
        if fields is None:
            line = f"{head} {record.getMessage()}"
        else:
            parts = [head, f"event={record.msg}"]
            parts.extend(f"{k}={_plain(v)}" for k, v in fields.items() if v is not None)
            line = " ".join(parts)
        if record.exc_info:
            line += " exception=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, then event and its fields (or message)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
        }
        fields: dict[str, Any] | None = getattr(record, _FIELDS, None)
        if fields is None:
            out["message"] = record.getMessage()
        else:
            out["event"] = record.msg
            for k, v in fields.items():
                if v is not None:
                    out[k] = v
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str, fmt: str = "keyvalue") -> None:
    """Send the process's log lines to stderr in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    # Per-run lines are on the hot path: skip the caller and process lookups they would
    # otherwise do for fields the formats never show.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
