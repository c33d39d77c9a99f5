"""Server settings, from the command line with environment variables as defaults."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 50051
    workflows: str = "examples:WORKFLOWS"
    store: str = "sqlite:///data/runs.db"
    max_concurrent_runs: int = 50_000
    default_timeout: float | None = None
    shutdown_grace: float = 10.0
    log_level: str = "INFO"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"WORKFLOW_{name}", default)


def _positive(value: str) -> float:
    seconds = float(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return seconds


def parse_args(argv: list[str] | None = None) -> Config:
    d = Config()
    p = argparse.ArgumentParser(
        prog="workflow-server",
        description="Serve workflows over gRPC (workflow.v1.WorkflowService). Every option "
        "also reads WORKFLOW_<OPTION> from the environment, e.g. WORKFLOW_PORT.",
    )
    p.add_argument("--host", default=_env("HOST", d.host), help="address to bind")
    p.add_argument("--port", type=int, default=int(_env("PORT", str(d.port))), help="0: any")
    p.add_argument(
        "--workflows",
        default=_env("WORKFLOWS", d.workflows),
        help="comma-separated [name=]module:attribute (a Workflow, its class, or a mapping)",
    )
    p.add_argument(
        "--store",
        default=_env("STORE", d.store),
        help="where runs and their events are kept: 'memory' (lost on exit) or "
        "sqlite:///path/runs.db (relative; sqlite:////abs/path.db for an absolute path)",
    )
    p.add_argument(
        "--max-concurrent-runs",
        type=int,
        default=int(_env("MAX_CONCURRENT_RUNS", str(d.max_concurrent_runs))),
        help="runs beyond this are refused with RESOURCE_EXHAUSTED",
    )
    default_timeout = _env("DEFAULT_TIMEOUT", "")
    p.add_argument(
        "--default-timeout",
        type=_positive,
        default=float(default_timeout) if default_timeout else None,
        help="seconds a run may take when its request sets no timeout (default: no limit)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=float(_env("SHUTDOWN_GRACE", str(d.shutdown_grace))),
        help="seconds running runs get to finish on SIGTERM before they are cancelled",
    )
    p.add_argument("--log-level", default=_env("LOG_LEVEL", d.log_level))
    a = p.parse_args(argv)
    return Config(
        host=a.host,
        port=a.port,
        workflows=a.workflows,
        store=a.store,
        max_concurrent_runs=a.max_concurrent_runs,
        default_timeout=a.default_timeout,
        shutdown_grace=a.shutdown_grace,
        log_level=a.log_level.upper(),
    )
