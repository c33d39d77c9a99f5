"""Server settings, from the command line with environment variables as defaults."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from .checkpoints import CHECKPOINT_DELAY
from .concurrency import CONCURRENCY_KEY_LABEL, Overflow

# HTTP/2 streams one connection may have open at once: room for 10,000 subscribers on one
# connection (the server's default; --max-streams-per-connection).
MAX_STREAMS_PER_CONNECTION = 20_000
# Seconds between keepalive pings, and how long an answer may take before the connection
# and its calls are dropped: a dead client on an idle stream is noticed within 40 s.
KEEPALIVE_TIME = 30.0
KEEPALIVE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 50051
    workflows: str = "examples:WORKFLOWS"
    store: str = "sqlite:///data/runs.db"
    max_concurrent_runs: int = 50_000
    max_payload_bytes: int = 1024 * 1024
    max_runs_per_key: int | None = None
    key_overflow: Overflow = Overflow.QUEUE
    max_result_bytes: int = 4 * 1024 * 1024
    max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION
    keepalive_time: float = KEEPALIVE_TIME
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    default_timeout: float | None = None
    retention: float | None = 7 * 86400.0
    max_ended_runs: int | None = 100_000
    prune_interval: float = 60.0
    shutdown_grace: float = 10.0
    checkpoint_delay: float = CHECKPOINT_DELAY
    log_level: str = "INFO"
    auth_tokens_file: str | None = None
    # The token document itself, from WORKFLOW_AUTH_TOKENS only: secrets never go on the
    # command line, where other users can read them, nor into a printed Config.
    auth_tokens: str | None = field(default=None, repr=False)
    insecure: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    log_format: str = "keyvalue"
    metrics_port: int = 0
    metrics_host: str | None = None  # None: the same as host
    tracing: bool = False
    otlp_endpoint: str | None = None


def _env(name: str, default: str) -> str:
    return os.environ.get(f"WORKFLOW_{name}", default)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(value: str) -> float | None:
    """'7d', '12h', '30m', '45s' or plain seconds; '0' or 'none' for no limit."""
    text = value.strip().lower()
    if text in ("", "0", "none", "off"):
        return None
    unit = _UNITS.get(text[-1])
    try:
        seconds = float(text[:-1]) * unit if unit else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: use e.g. 7d, 12h, 30m or 45s") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: must be positive")
    return seconds


def _limit(value: str) -> int | None:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return n or None


def _positive(value: str) -> float:
    seconds = float(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return seconds


class _RefuseSecret(argparse.Action):
    """An option that exists only to refuse a secret on the command line, where other
    users can read it, without echoing the value."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kw: object) -> None:
        parser.error(
            f"{self.option_strings[0]}: secrets are not accepted on the command line; use "
            "--auth-tokens-file or the WORKFLOW_AUTH_TOKENS environment variable"
        )


def _not_negative(value: str) -> float:
    seconds = float(value)
    if not seconds >= 0:  # NaN too
        raise argparse.ArgumentTypeError("must be 0 or more")
    return seconds


def _port(value: str) -> int:
    try:
        port = int(value or "0")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value}: a port is 0-65535 (0: off)")
    return port


def _flag(value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r}: expected true or false")


def _positive_int(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return n


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
    p.add_argument(
        "--max-payload-bytes",
        type=int,
        default=int(_env("MAX_PAYLOAD_BYTES", str(d.max_payload_bytes))),
        help="largest run input or sent event data accepted (INVALID_ARGUMENT beyond)",
    )
    p.add_argument(
        "--max-runs-per-key",
        type=_limit,
        default=_limit(_env("MAX_RUNS_PER_KEY", "0")),
        help=f"most running runs that share a '{CONCURRENCY_KEY_LABEL}' label (0: no limit)",
    )
    p.add_argument(
        "--key-overflow",
        type=Overflow,
        choices=list(Overflow),
        default=Overflow(_env("KEY_OVERFLOW", d.key_overflow.value)),
        help="a run over its key's limit: 'queue' (waits, PENDING, in arrival order) or "
        "'reject' (RESOURCE_EXHAUSTED)",
    )
    p.add_argument(
        "--max-result-bytes",
        type=_positive_int,
        default=_positive_int(_env("MAX_RESULT_BYTES", str(d.max_result_bytes))),
        help="largest run result kept; a run returning more ends FAILED (ResultTooLargeError)",
    )
    p.add_argument(
        "--max-streams-per-connection",
        type=_positive_int,
        default=_positive_int(
            _env("MAX_STREAMS_PER_CONNECTION", str(d.max_streams_per_connection))
        ),
        help="concurrent calls one HTTP/2 connection may have open; a call made at the cap "
        "waits for a free stream, calls opened in a burst past it are refused (UNAVAILABLE)",
    )
    p.add_argument(
        "--keepalive-time",
        type=_positive,
        default=_positive(_env("KEEPALIVE_TIME", str(d.keepalive_time))),
        help="seconds between the server's keepalive pings on each connection",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=_positive,
        default=_positive(_env("KEEPALIVE_TIMEOUT", str(d.keepalive_timeout))),
        help="seconds without a ping's answer after which a connection and its calls are "
        "dropped as dead",
    )
    default_timeout = _env("DEFAULT_TIMEOUT", "")
    p.add_argument(
        "--default-timeout",
        type=_positive,
        default=float(default_timeout) if default_timeout else None,
        help="seconds a run may take when its request sets no timeout (default: no limit)",
    )
    p.add_argument(
        "--retention",
        type=duration,
        default=duration(_env("RETENTION", "7d")),
        help="how long ended runs and their events are kept, e.g. 7d, 12h ('none': forever)",
    )
    p.add_argument(
        "--max-ended-runs",
        type=_limit,
        default=_limit(_env("MAX_ENDED_RUNS", str(d.max_ended_runs))),
        help="most ended runs kept; the oldest go first (0: no limit)",
    )
    p.add_argument(
        "--prune-interval",
        type=_positive,
        default=float(_env("PRUNE_INTERVAL", str(d.prune_interval))),
        help="seconds between passes that delete runs past --retention/--max-ended-runs",
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=float(_env("SHUTDOWN_GRACE", str(d.shutdown_grace))),
        help="seconds running runs get to finish on SIGTERM before they are cancelled",
    )
    p.add_argument(
        "--checkpoint-delay",
        type=_not_negative,
        default=_not_negative(_env("CHECKPOINT_DELAY", str(d.checkpoint_delay))),
        help="seconds from a completed step to its run's checkpoint in a durable store; a "
        "run whose unsaved steps ran this long in all is saved at once (0: after every step)",
    )
    p.add_argument("--log-level", default=_env("LOG_LEVEL", d.log_level))
    p.add_argument(
        "--auth-tokens-file",
        default=_env("AUTH_TOKENS_FILE", "") or None,
        metavar="PATH",
        help="JSON file of the bearer tokens callers must send (see README, Security); "
        "WORKFLOW_AUTH_TOKENS may hold the same document instead",
    )
    # nargs="?": refused with its reason whatever the value looks like (even "-...").
    p.add_argument("--auth-tokens", nargs="?", action=_RefuseSecret, help=argparse.SUPPRESS)
    p.add_argument(
        "--insecure",
        action="store_true",
        default=_env("INSECURE", "").strip().lower() in ("1", "true", "yes", "on"),
        help="allow serving a non-loopback --host without authentication",
    )
    p.add_argument(
        "--tls-cert",
        default=_env("TLS_CERT", "") or None,
        metavar="PEM",
        help="server certificate chain; with --tls-key, serve TLS only",
    )
    p.add_argument(
        "--tls-key",
        default=_env("TLS_KEY", "") or None,
        metavar="PEM",
        help="the server certificate's private key",
    )
    p.add_argument(
        "--tls-client-ca",
        default=_env("TLS_CLIENT_CA", "") or None,
        metavar="PEM",
        help="require client certificates signed by these CA certificates (mutual TLS)",
    )
    p.add_argument(
        "--log-format",
        choices=("keyvalue", "json"),
        default=_env("LOG_FORMAT", d.log_format),
        help="key=value pairs or one JSON object per line",
    )
    p.add_argument(
        "--metrics-port",
        type=_port,
        default=_env("METRICS_PORT", "0"),
        help="serve Prometheus metrics at http://<metrics-host>:<port>/metrics (0: off)",
    )
    p.add_argument(
        "--metrics-host",
        default=_env("METRICS_HOST", "") or None,
        help="address the metrics endpoint binds (default: --host)",
    )
    p.add_argument(
        "--tracing",
        type=_flag,
        nargs="?",
        const=True,
        default=_env("TRACING", "false"),
        help="make OpenTelemetry spans for RPCs, runs and steps (exported with --otlp-endpoint)",
    )
    p.add_argument(
        "--otlp-endpoint",
        default=_env("OTLP_ENDPOINT", "") or None,
        help="OTLP/gRPC collector for spans, e.g. http://localhost:4317 (default: "
        "OTEL_EXPORTER_OTLP_ENDPOINT; neither: spans are not exported)",
    )
    a = p.parse_args(argv)
    if a.log_format not in ("keyvalue", "json"):
        p.error(f"WORKFLOW_LOG_FORMAT={a.log_format!r}: expected keyvalue or json")
    return Config(
        host=a.host,
        port=a.port,
        workflows=a.workflows,
        store=a.store,
        max_concurrent_runs=a.max_concurrent_runs,
        max_payload_bytes=a.max_payload_bytes,
        max_runs_per_key=a.max_runs_per_key,
        key_overflow=a.key_overflow,
        max_result_bytes=a.max_result_bytes,
        max_streams_per_connection=a.max_streams_per_connection,
        keepalive_time=a.keepalive_time,
        keepalive_timeout=a.keepalive_timeout,
        default_timeout=a.default_timeout,
        retention=a.retention,
        max_ended_runs=a.max_ended_runs,
        prune_interval=a.prune_interval,
        shutdown_grace=a.shutdown_grace,
        checkpoint_delay=a.checkpoint_delay,
        log_level=a.log_level.upper(),
        auth_tokens_file=a.auth_tokens_file,
        auth_tokens=_env("AUTH_TOKENS", "") or None,
        insecure=a.insecure,
        tls_cert=a.tls_cert,
        tls_key=a.tls_key,
        tls_client_ca=a.tls_client_ca,
        log_format=a.log_format,
        metrics_port=a.metrics_port,
        metrics_host=a.metrics_host,
        tracing=a.tracing,
        otlp_endpoint=a.otlp_endpoint,
    )
