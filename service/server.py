"""Build, start and gracefully stop the gRPC server: the workflow service, health and
reflection."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engine import Workflow

from ._pb import workflow_pb2 as pb
from ._pb import workflow_pb2_grpc as pb_grpc
from .config import Config, parse_args
from .registry import RegistryError, load_workflows
from .runs import RunManager
from .servicer import WorkflowServicer
from .store import MemoryStore, Store, StoreError, open_store

log = logging.getLogger("service")

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["WorkflowService"].full_name

# Explicit limits on both directions (clients should use the same; see README).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (--max-streams-per-connection): calls beyond it
    # on one connection wait in the client's transport for a free stream.
    ("grpc.max_concurrent_streams", 1000),
    # Notice dead peers on long, idle streams (--keepalive-time/--keepalive-timeout): ping
    # every 30 s, drop the connection and its calls when an answer takes over 10 s.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # A keepalive ping due while another ping (e.g. a flow-control probe) is unanswered
    # waits on that one, whose own timeout is this (1 min by default): keep them equal.
    ("grpc.http2.ping_timeout_ms", 10_000),
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
    max_streams_per_connection: int = 1000,
    keepalive_time: float = 30.0,
    keepalive_timeout: float = 10.0,
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
        max_result_bytes: int = 4 * 1024 * 1024,
        prune_interval: float = 60.0,
        shutdown_grace: float = 10.0,
        max_streams_per_connection: int = 1000,
        keepalive_time: float = 30.0,
        keepalive_timeout: float = 10.0,
    ) -> None:
        self.manager = RunManager(
            workflows,
            store or MemoryStore(),
            max_concurrent_runs=max_concurrent_runs,
            default_timeout=default_timeout,
            retention=retention,
            max_ended_runs=max_ended_runs,
            max_payload_bytes=max_payload_bytes,
            max_result_bytes=max_result_bytes,
        )
        self.prune_interval = prune_interval
        self.shutdown_grace = shutdown_grace
        self.server = grpc.aio.server(
            options=server_options(max_streams_per_connection, keepalive_time, keepalive_timeout)
        )
        pb_grpc.add_WorkflowServiceServicer_to_server(WorkflowServicer(self.manager), self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        self._stopped = asyncio.Event()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        bound = self.server.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        await self.manager.recover()
        await self.server.start()
        self.manager.start_pruning(self.prune_interval)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return bound

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
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _tune_gc() -> None:
    # Thousands of live runs make the cyclic collector rescan the same long-lived objects;
    # freeze what start-up allocated and collect the young generation less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


async def serve(config: Config) -> None:
    workflows = load_workflows(config.workflows)
    server = WorkflowServer(
        workflows,
        store=open_store(config.store),
        max_concurrent_runs=config.max_concurrent_runs,
        default_timeout=config.default_timeout,
        retention=config.retention,
        max_ended_runs=config.max_ended_runs,
        max_payload_bytes=config.max_payload_bytes,
        max_result_bytes=config.max_result_bytes,
        prune_interval=config.prune_interval,
        shutdown_grace=config.shutdown_grace,
        max_streams_per_connection=config.max_streams_per_connection,
        keepalive_time=config.keepalive_time,
        keepalive_timeout=config.keepalive_timeout,
    )
    port = await server.start(config.host, config.port)
    _tune_gc()
    log.info(
        "event=listening address=%s:%d workflows=%s store=%s loop=%s",
        config.host,
        port,
        ",".join(sorted(workflows)),
        config.store,
        type(asyncio.get_running_loop()).__module__.split(".")[0],
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("event=stopping grace_s=%g", config.shutdown_grace)
    await server.stop()
    log.info("event=stopped")


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    # Per-run log lines are on the hot path: skip the caller and process lookups they
    # would otherwise do for fields the format never shows.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(
        level=config.log_level,
        format="time=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    try:
        import uvloop  # optional: faster loop when installed

        runner = uvloop.run
    except ImportError:
        pass
    try:
        runner(serve(config))
    except (RegistryError, StoreError) as e:
        sys.exit(f"workflow-server: {e}")
