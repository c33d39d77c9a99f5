"""Build, start and gracefully stop the gRPC server: the workflow service, health and
reflection."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from engine import Workflow

from . import logs
from ._pb import workflow_pb2 as pb
from .auth import AuthInterceptor, TokenRegistry, load_tokens
from .checkpoints import CHECKPOINT_DELAY
from .concurrency import Overflow
from .config import (
    KEEPALIVE_TIME,
    KEEPALIVE_TIMEOUT,
    MAX_STREAMS_PER_CONNECTION,
    Config,
    parse_args,
)
from .interceptors import GenericOnly, HandlerWrapper
from .observer import ObserveRun
from .registry import RegistryError, load_workflows
from .runs import RunManager
from .security import SecuritySetupError, check_exposure
from .servicer import WorkflowServicer, add_to_server
from .store import MemoryStore, Store, StoreError, open_store
from .tls import server_credentials

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from .metrics import Metrics, MetricsEndpoint

log = logging.getLogger("service")

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["WorkflowService"].full_name

# Explicit limits on both directions (clients should use the same; see README).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (--max-streams-per-connection). A call made
    # while a connection is at the cap waits for a free stream, but calls opened in a burst
    # past it are refused (RST_STREAM REFUSED_STREAM: UNAVAILABLE).
    ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
    # Notice dead peers on long, idle streams (--keepalive-time/--keepalive-timeout): ping
    # every KEEPALIVE_TIME, drop the connection and its calls when an answer takes longer
    # than KEEPALIVE_TIMEOUT.
    ("grpc.keepalive_time_ms", round(KEEPALIVE_TIME * 1000)),
    ("grpc.keepalive_timeout_ms", round(KEEPALIVE_TIMEOUT * 1000)),
    # A keepalive ping due while another ping (e.g. a flow-control probe) is unanswered
    # waits on that one, whose own timeout is this (1 min by default): keep them equal.
    ("grpc.http2.ping_timeout_ms", round(KEEPALIVE_TIMEOUT * 1000)),
    ("grpc.keepalive_permit_without_calls", 1),
    # Clients may ping this often without data before being sent GOAWAY (too_many_pings).
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # grpc core cancels calls that arrive faster than the loop accepts them once more than
    # 1,000 wait (its default); a burst of thousands of starts is normal here.
    ("grpc.server.max_pending_requests", 50_000),
    ("grpc.server.max_pending_requests_hard_limit", 100_000),
    # ...and silently cancels a call that waited there 30 s (its default); under a burst of
    # 10,000 starts the loop may take longer than that to accept them all.
    ("grpc.server_max_unrequested_time_in_server", 600),
]


def server_options(
    max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION,
    keepalive_time: float = KEEPALIVE_TIME,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
) -> list[tuple[str, int]]:
    """SERVER_OPTIONS with the configurable limits applied."""
    chosen = {
        "grpc.max_concurrent_streams": max_streams_per_connection,
        "grpc.keepalive_time_ms": round(keepalive_time * 1000),
        "grpc.keepalive_timeout_ms": round(keepalive_timeout * 1000),
        "grpc.http2.ping_timeout_ms": round(keepalive_timeout * 1000),
    }
    return [(key, chosen.get(key, value)) for key, value in SERVER_OPTIONS]


class WorkflowServer:
    """The service on a grpc.aio server; ``start()`` returns the bound port."""

    def __init__(
        self,
        workflows: dict[str, Workflow],
        *,
        store: Store | None = None,
        max_concurrent_runs: int = 50_000,
        default_timeout: float | None = None,
        retention: float | None = None,
        max_ended_runs: int | None = None,
        max_payload_bytes: int = 1024 * 1024,
        max_runs_per_key: int | None = None,
        key_overflow: Overflow = Overflow.QUEUE,
        max_result_bytes: int = 4 * 1024 * 1024,
        prune_interval: float = 60.0,
        shutdown_grace: float = 10.0,
        checkpoint_delay: float = CHECKPOINT_DELAY,
        max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION,
        keepalive_time: float = KEEPALIVE_TIME,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        tokens: TokenRegistry | None = None,
        tls: grpc.ServerCredentials | None = None,
        metrics: bool = False,
        metrics_host: str | None = None,
        metrics_port: int = 0,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        """``metrics``: collect Prometheus metrics and serve them on ``metrics_host`` (default:
        the gRPC host) and ``metrics_port`` (0: any free port) once started.
        ``tracer_provider``: make OpenTelemetry spans with it (None: no tracing)."""
        store = store or MemoryStore()
        wrappers: list[HandlerWrapper] = []
        observers: list[ObserveRun] = []
        self.metrics: Metrics | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None
        self._metrics_address = (metrics_host, metrics_port)
        # Order, outermost first: the RPC span, then metrics, then what may refuse a call,
        # so refused calls are traced and counted too.
        if tracer_provider is not None:
            from .tracing import Tracing

            tracing = Tracing(tracer_provider, SERVICE_NAME)
            wrappers.append(tracing.interceptor())
            observers.append(tracing.observe)
        if metrics:
            from .metrics import Metrics, MetricsInterceptor

            self.metrics = Metrics(frozenset({f"/{SERVICE_NAME}/StreamEvents"}))
            wrappers.append(MetricsInterceptor(self.metrics))
            observers.insert(0, self.metrics.observe)
            store.observe_append = self.metrics.store_append.observe
        self.manager = RunManager(
            workflows,
            store,
            max_concurrent_runs=max_concurrent_runs,
            default_timeout=default_timeout,
            retention=retention,
            max_ended_runs=max_ended_runs,
            max_payload_bytes=max_payload_bytes,
            max_runs_per_key=max_runs_per_key,
            key_overflow=key_overflow,
            max_result_bytes=max_result_bytes,
            observers=observers,
            checkpoint_delay=checkpoint_delay,
        )
        self.prune_interval = prune_interval
        self.shutdown_grace = shutdown_grace
        self.tls = tls
        self._auth: AuthInterceptor | None = None
        if tokens is not None:
            self._auth = AuthInterceptor(tokens)
            wrappers.append(self._auth)
        self.server = grpc.aio.server(
            options=server_options(max_streams_per_connection, keepalive_time, keepalive_timeout),
        )
        # Every service's handlers, wrapped by the interceptors, as generic handlers only.
        generic = GenericOnly(self.server, wrappers)
        add_to_server(WorkflowServicer(self.manager), generic)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, generic)
        # What reflection.enable_server_reflection does for a grpc.aio server.
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(
                [
                    SERVICE_NAME,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ]
            ),
            generic,
        )
        self._stopped = asyncio.Event()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        address = f"{host}:{port}"
        if self.tls is not None:
            bound = self.server.add_secure_port(address, self.tls)
        else:
            bound = self.server.add_insecure_port(address)
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        if self.metrics is not None:
            metrics_host, metrics_port = self._metrics_address
            self.metrics_endpoint = self.metrics.serve(metrics_host or host, metrics_port)
        await self.manager.recover()
        await self.server.start()
        self.manager.start_pruning(self.prune_interval)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return bound

    def replace_tokens(self, tokens: TokenRegistry) -> None:
        """Authenticate calls with ``tokens`` from now on (calls already admitted go on)."""
        if self._auth is None:
            raise SecuritySetupError("auth was off at start-up; restart with tokens to turn it on")
        self._auth.tokens = tokens

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new runs, let running ones finish within the grace period, cancel the rest
        (their streams receive the terminal event), then close the server."""
        if self._stopped.is_set():
            return
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.manager.shutdown(self.shutdown_grace if grace is None else grace)
        await self.server.stop(grace=2.0)
        await self.manager.store.close()
        if self.metrics_endpoint is not None:
            await asyncio.to_thread(self.metrics_endpoint.close)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _tune_gc() -> None:
    # Thousands of live runs make the cyclic collector rescan the same long-lived objects;
    # freeze what start-up allocated and collect the young generation less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _reload_tokens(server: WorkflowServer, config: Config, workflows: dict[str, Workflow]) -> None:
    """SIGHUP: read --auth-tokens-file again and use its tokens from the next call on; a
    file that no longer reads or parses is logged and the tokens in use are kept."""
    if not config.auth_tokens_file:
        why = "WORKFLOW_AUTH_TOKENS is read at start-up" if config.auth_tokens else "auth is off"
        logs.event(log, logging.WARNING, "tokens_not_reloaded", reason=f"{why}; restart instead")
        return
    try:
        tokens = _tokens(config, workflows)
        assert tokens is not None  # the file is set
        server.replace_tokens(tokens)
    except SecuritySetupError as e:
        logs.event(
            log, logging.ERROR, "tokens_reload_failed", error=str(e), kept="the tokens in use"
        )
        return
    logs.event(log, logging.INFO, "tokens_reloaded", tokens=len(tokens.principals))


def _tokens(config: Config, workflows: dict[str, Workflow]) -> TokenRegistry | None:
    """The configured tokens (None: auth off), checked against the hosted workflows."""
    loaded = load_tokens(config.auth_tokens_file, config.auth_tokens)
    if loaded is None:
        return None
    tokens, source = loaded
    tokens.check_workflows(workflows, source)
    return tokens


def _security(
    config: Config, workflows: dict[str, Workflow]
) -> tuple[TokenRegistry | None, grpc.ServerCredentials | None]:
    """Tokens and TLS credentials from the configuration; refuses an exposed, open server."""
    tokens = _tokens(config, workflows)
    tls = server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
    authenticated = tokens is not None or config.tls_client_ca is not None
    check_exposure(config.host, authenticated=authenticated, insecure=config.insecure)
    logs.event(
        log,
        logging.INFO,
        "security",
        auth="tokens" if tokens is not None else "off",
        tokens=len(tokens.principals) if tokens is not None else 0,
        tls="mutual" if config.tls_client_ca else "on" if tls is not None else "off",
    )
    return tokens, tls


async def serve(config: Config) -> None:
    workflows = load_workflows(config.workflows)
    tokens, tls = _security(config, workflows)
    provider = None
    if config.tracing:
        from .tracing import SPAN_EXPORT_LIMIT, export_remaining, make_provider

        provider = make_provider(config.otlp_endpoint)
    server = WorkflowServer(
        workflows,
        store=open_store(config.store),
        max_concurrent_runs=config.max_concurrent_runs,
        default_timeout=config.default_timeout,
        retention=config.retention,
        max_ended_runs=config.max_ended_runs,
        max_payload_bytes=config.max_payload_bytes,
        max_runs_per_key=config.max_runs_per_key,
        key_overflow=config.key_overflow,
        max_result_bytes=config.max_result_bytes,
        max_streams_per_connection=config.max_streams_per_connection,
        keepalive_time=config.keepalive_time,
        keepalive_timeout=config.keepalive_timeout,
        prune_interval=config.prune_interval,
        shutdown_grace=config.shutdown_grace,
        checkpoint_delay=config.checkpoint_delay,
        tokens=tokens,
        tls=tls,
        metrics=config.metrics_port > 0,
        metrics_host=config.metrics_host,
        metrics_port=config.metrics_port,
        tracer_provider=provider,
    )
    port = await server.start(config.host, config.port)
    _tune_gc()
    endpoint = server.metrics_endpoint
    logs.event(
        log,
        logging.INFO,
        "listening",
        address=f"{config.host}:{port}",
        workflows=",".join(sorted(workflows)),
        store=config.store,
        loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
        metrics=f"{config.metrics_host or config.host}:{endpoint.port}" if endpoint else None,
        tracing=config.tracing or None,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_tokens, server, config, workflows)
    await stop.wait()
    logs.event(log, logging.INFO, "stopping", grace_s=config.shutdown_grace)
    await server.stop()
    if provider is not None and not await export_remaining(provider):
        logs.event(log, logging.WARNING, "spans_not_exported", waited_s=SPAN_EXPORT_LIMIT)
    logs.event(log, logging.INFO, "stopped")


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    logs.configure(config.log_level, config.log_format)
    runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    try:
        import uvloop  # optional: faster loop when installed

        runner = uvloop.run
    except ImportError:
        pass
    try:
        runner(serve(config))
    except (RegistryError, StoreError, SecuritySetupError, OSError) as e:
        sys.exit(f"workflow-server: {e}")
