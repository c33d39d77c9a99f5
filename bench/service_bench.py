#!/usr/bin/env python
"""Service benchmark: our gRPC service against bare grpc.aio and against llama-agents-server.

Run with ``make bench`` (after bench/engine_bench.py) or ``.venv/bin/python
bench/service_bench.py``. Everything runs on loopback with the server and its client(s) in
separate processes: the parent starts a fresh server subprocess (this script with
``--serve``) for every measurement, then the client subprocess(es) (this script with
``--client``). A client connects, warms up, prints ``READY``, waits for ``GO`` on stdin, runs
the timed workload and prints one JSON line; with several client processes the parent sends
``GO`` to all at once and takes the rate over the union of their timed intervals. Each
configuration is measured ``--repeats`` times (default 3; ticker_10k ``--ticker-repeats``
times, default 1, as it takes about a minute), interleaved round by round (every other
round in reverse order), and the table gives the median with the spread (min-max) beside it.

Our server runs as ``python -m service --log-level WARNING`` would run it, through a
launcher here that picks the event loop (bench/ is on its PYTHONPATH for the linear case's
workflows). Its store is the default SQLite one, in a fresh directory per server
(``--stores memory`` or ``--stores sqlite memory`` measures ``--store memory`` as well).

Cases
  unary       64 calls in flight on one channel, 5,000 timed calls (500 warm-up):
              bare      a generic grpc.aio unary handler that returns the request bytes
              run_echo  RunWorkflow(workflow="echo", wait=true)
  stream      64 streams at once, each call reads its stream to the end (about 25,000
              timed messages, one warm-up call per stream):
              bare           a generic grpc.aio server-streaming handler: 100 messages per
                             call (a serialized ticker STREAM event, sent back 100 times)
              events_all     StreamEvents(start=ticker count=100 interval_ms=0), every kind:
                             104 messages per call (run started, the step's start, 100
                             ticks, its finish, terminal); sequences checked contiguous
              events_stream  the same with kinds=[EVENT_KIND_STREAM]: 101 messages per call
  linear      the same 3-step linear workflow (bench/bench_workflows.py) on each server, 500
              concurrent clients each starting one run and waiting for its result; an
              untimed wave of 100, then 2 timed waves of 500:
              llama  llama-agents-server (HTTP/1.1, uvicorn, up to 500 connections),
                     POST /workflows/linear/run
              ours   RunWorkflow(workflow="linear", wait=true), one channel
  overhead    what auth, metrics and tracing cost in RunWorkflow throughput (target: under
              10%). Four servers run at once, each idle but for its own bursts:
              run_echo      RunWorkflow(workflow="echo", wait=true), as in unary
              run_echo_am   the same with a bearer token checked and Prometheus metrics on
                            (--metrics-port)
              run_echo_ops  and OpenTelemetry tracing on as well, with no exporter
                            (--tracing)
              run_echo_ops_sampled  the same with the SDK's standard ratio sampler
                            (OTEL_TRACES_SAMPLER=parentbased_traceidratio, 0.1): for
                            reference, not a target
              One client sends each server in turn a burst of 2,000 calls, 64 in flight
              (every server gets the same token), 12 rounds per repeat, each server taking
              each place in the order equally often. A burst lasts a second or two, so the
              machine's slow drift (10-20% in a rate over minutes here) moves the two
              bursts of a pair alike; what remains is the noise of a few seconds, and
              differences between one repeat's server processes and the next's. Per
              server: the median burst rate; for the other three, the median over rounds
              of the burst's rate over plain's burst in the same round, and likewise of
              the server's CPU time per call (user + system, all threads, from /proc).
  instructions  the overhead case's four servers, each run once under valgrind's callgrind
              (when installed; asyncio loop): CPU instructions the server executes per call
              over 640 timed calls. A count, not a rate: on an idle machine it repeats to
              within about 0.3%, where rates on a shared 2-core machine swing by 10-20%.
              It counts user-space instructions only: the kernel's share of the server's
              CPU time per call (about a fifth here: sockets, epoll, futexes) is left out,
              and auth, metrics and tracing add almost none of it.
  ticker_10k  10,000 StreamEvents(start=ticker count=10 interval_ms=4000) opened at once, one
              subscriber each, from 2 client processes (a run lasts 40 s, longer than opening
              all 10,000 takes, so all are alive at once): every run must end RUN_SUCCEEDED
              with a contiguous sequence and all its STREAM events; peak server RSS (the
              larger of VmHWM and VmRSS sampled every 20 ms), and how many runs were alive
              at once (from the server times of each run's first and terminal events)

Every case runs twice: with asyncio's default loop on both sides, and with uvloop on both
sides (when uvloop is installed); the table shows the loop each side reported. Every server
process gets our server's gc settings (``gc.collect(); gc.freeze();
gc.set_threshold(50_000, 50, 100)`` after start-up), and so does every client process
after its imports.
"""

import argparse
import asyncio
import gc
import importlib.metadata
import itertools
import json
import logging
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)

GC_THRESHOLD = (50_000, 50, 100)
LOOPS = ("asyncio", "uvloop")

# unary
INFLIGHT = 64
UNARY_CALLS = 5_000
UNARY_WARMUP = 500
# overhead: bursts of unary calls against four live servers in turn
BURST_CALLS = 2_000
BURST_ROUNDS = 12  # each server's bursts per repeat
BURST_PAUSE_S = 0.1  # between bursts: the last server's leftover work is not the next's
# stream
STREAMS = 64
BARE_STREAM_MESSAGES = 100
TICKER_COUNT = 100
STREAM_TARGET_MESSAGES = 25_600  # calls per timed run: about this many messages
# linear
LINEAR_CLIENTS = 500
LINEAR_WARMUP = 100
LINEAR_WAVES = 2
# instructions (under callgrind, about 50 calls/s)
INSTRUCTION_CALLS = 640
# ticker_10k
TICKER_RUNS = 10_000
TICKER_10K_CLIENTS = 2
# count and interval_ms of each run (--ticker-count, --ticker-interval-ms): 40 s a run, so
# every run is still going when the last one starts
TICKER = {"count": 10, "interval_ms": 4000}

CALL_TIMEOUT_S = 300.0
SERVER_START_TIMEOUT_S = 60.0
CLIENT_TIMEOUT_S = 600.0
RSS_LIMIT_MIB = 1024.0

BARE_SERVICE = "bench.Bare"
# run_echo_ops: the server checks this bearer token (scope run) and has Prometheus metrics
# and OpenTelemetry tracing on (spans made, no exporter); the client sends the token.
OPS_TOKEN = "bench-token-7f3a9c2e5b1d4f60"
# run_echo_am: token and metrics, no tracing; run_echo_ops_sampled: one trace in ten.
OPS_IMPLS = ("run_echo_am", "run_echo_ops", "run_echo_ops_sampled")
OPS_TOKENS = json.dumps({"tokens": [{"name": "bench", "token": OPS_TOKEN, "scopes": ["run"]}]})
LLAMA_DIST = "llama-agents-server"


def tune_gc() -> None:
    """What our server does after start-up (service.server._tune_gc)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def loop_runner(loop: str) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    if loop == "uvloop":
        import uvloop

        return uvloop.run  # type: ignore[no-any-return]
    return asyncio.run


def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


# ---- servers (child mode: --serve) ---------------------------------------------------------


def listening(port: int, what: str) -> None:
    # The same line our server logs, so the parent reads every server's port and loop alike.
    print(
        f"event=listening address=127.0.0.1:{port} workflows={what} loop={loop_name()}",
        file=sys.stderr,
        flush=True,
    )


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_bare(port: int) -> None:
    """The floor: generic handlers on raw bytes, no (de)serialization on the server."""
    import grpc

    from service.server import SERVER_OPTIONS

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    async def stream(request: bytes, context: Any) -> Any:
        for _ in range(BARE_STREAM_MESSAGES):
            yield request

    handler = grpc.method_handlers_generic_handler(
        BARE_SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    tune_gc()
    listening(port, "bare")
    await wait_for_signal()
    await server.stop(grace=1.0)


def serve_ours(port: int, loop: str, workflows: str, store: str) -> None:
    """``python -m service --port N --log-level WARNING`` with the loop chosen here.

    Logging is set up as service.server.main does; the ``service`` logger stays at INFO so
    the start-up line (port, loop) is written, ``service.runs`` (one line per run start and
    end) is at WARNING.
    """
    from service import logs
    from service.config import parse_args
    from service.server import serve

    argv = ["--port", str(port), "--log-level", "WARNING", "--workflows", workflows]
    config = parse_args([*argv, "--store", store])
    logs.configure(config.log_level, config.log_format)
    logging.getLogger("service").setLevel(logging.INFO)
    logging.getLogger("service.runs").setLevel(logging.WARNING)
    loop_runner(loop)(serve(config))


async def serve_llama(port: int) -> None:
    """llama-agents-server's WorkflowServer as its ``serve()`` runs it: uvicorn on its app."""
    import uvicorn
    from bench_workflows import llama_workflows
    from llama_agents.server import WorkflowServer

    server = WorkflowServer()
    for name, wf in llama_workflows().items():
        server.add_workflow(name, wf)
    config = uvicorn.Config(
        server.app, host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    http = uvicorn.Server(config)
    http.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(http.serve())
    while not http.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    tune_gc()
    listening(port, "linear")
    await wait_for_signal()
    http.should_exit = True
    await task


def serve(kind: str, loop: str, port: int, workflows: str, store: str) -> None:
    if kind == "ours":
        serve_ours(port, loop, workflows, store)
    elif kind == "bare":
        loop_runner(loop)(serve_bare(port))
    elif kind == "llama":
        loop_runner(loop)(serve_llama(port))
    else:
        raise ValueError(kind)


# ---- clients (child mode: --client) --------------------------------------------------------


def grpc_channel(target: str) -> Any:
    import grpc
    from workflow_client._client import CHANNEL_OPTIONS

    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


CPU_AT_GO: list[float] = []


async def ready_then_go() -> float:
    """Tell the parent the warm-up is done; start the timed part when it says GO."""
    print("READY", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "GO":
        raise SystemExit("parent went away")
    CPU_AT_GO.append(time.process_time())
    return time.time()


async def spread(total: int, workers: int, one: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """``total`` calls of ``one`` by ``workers`` coroutines; the sum of what they return."""

    async def worker(n: int) -> int:
        got = 0
        for _ in range(n):
            got += await one()
        return got

    shares = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    return sum(await asyncio.gather(*[worker(n) for n in shares if n]))


def _pb() -> Any:
    from workflow_client._pb import workflow_pb2 as pb

    return pb


def echo_request(pb: Any) -> Any:
    req = pb.RunWorkflowRequest(workflow="echo", wait=True)
    req.input.update({"message": "hello"})
    return req


def checked_echo(
    pb: Any, stub: Any, req: Any, with_token: bool
) -> Callable[[], Coroutine[Any, Any, int]]:
    """One ``RunWorkflow(echo, wait=true)`` call whose response is checked (SUCCEEDED, the
    message back), sending the bench token when ``with_token``."""
    ok = pb.RUN_STATUS_SUCCEEDED
    metadata = (("authorization", f"Bearer {OPS_TOKEN}"),) if with_token else None

    async def one() -> int:
        resp = await stub.RunWorkflow(req, timeout=CALL_TIMEOUT_S, metadata=metadata)
        if resp.run.status != ok or resp.run.result.string_value != "hello":
            raise RuntimeError(f"bad RunWorkflow response {resp!r}")
        return 1

    return one


async def client_unary(impl: str, target: str, calls: int) -> dict[str, Any]:
    pb = _pb()
    from workflow_client._pb import workflow_pb2_grpc as pb_grpc

    channel = grpc_channel(target)
    req = echo_request(pb)
    if impl == "bare":
        call = channel.unary_unary(
            f"/{BARE_SERVICE}/Echo",
            request_serializer=pb.RunWorkflowRequest.SerializeToString,
            response_deserializer=pb.RunWorkflowRequest.FromString,
        )

        async def one() -> int:
            resp = await call(req, timeout=CALL_TIMEOUT_S)
            if resp.workflow != "echo":
                raise RuntimeError(f"bad echo response {resp!r}")
            return 1
    else:
        stub = pb_grpc.WorkflowServiceStub(channel)
        one = checked_echo(pb, stub, req, with_token=impl in OPS_IMPLS)

    tune_gc()
    await spread(UNARY_WARMUP, INFLIGHT, one)
    t0 = await ready_then_go()
    done = await spread(calls, INFLIGHT, one)
    t1 = time.time()
    await channel.close()
    return {"t0": t0, "t1": t1, "count": done, "calls": done}


async def client_overhead(targets: str, calls: int, rounds: int) -> dict[str, Any]:
    """Bursts of ``calls`` RunWorkflow calls against each server of ``targets``
    (``impl=host:port@pid,...``) in turn, ``rounds`` times; each burst's rate and the
    server's CPU time per call (user + system, all its threads, from /proc)."""
    pb = _pb()
    from workflow_client._pb import workflow_pb2_grpc as pb_grpc

    req = echo_request(pb)
    servers: dict[str, tuple[Callable[[], Coroutine[Any, Any, int]], int]] = {}
    channels = []
    for entry in targets.split(","):
        impl, _, rest = entry.partition("=")
        address, _, pid = rest.rpartition("@")
        channel = grpc_channel(address)
        channels.append(channel)
        # Every server is sent the token, so the client's work per call is the same for all.
        one = checked_echo(pb, pb_grpc.WorkflowServiceStub(channel), req, with_token=True)
        servers[impl] = (one, int(pid))
    tune_gc()
    for one, _ in servers.values():
        await spread(UNARY_WARMUP, INFLIGHT, one)
    t0 = await ready_then_go()
    impls = list(servers)
    bursts: dict[str, list[dict[str, float]]] = {impl: [] for impl in impls}
    for rnd in range(rounds):
        # Each server takes each place in the order equally often, forwards and backwards.
        shift = rnd % len(impls)
        order = impls[shift:] + impls[:shift]
        if rnd // len(impls) % 2:
            order.reverse()
        for impl in order:
            one, pid = servers[impl]
            await asyncio.sleep(BURST_PAUSE_S)
            cpu0, began = cpu_seconds(pid), time.perf_counter()
            done = await spread(calls, INFLIGHT, one)
            wall, cpu = time.perf_counter() - began, cpu_seconds(pid) - cpu0
            bursts[impl].append({"rate": done / wall, "cpu_per_call": cpu / done, "round": rnd})
    t1 = time.time()
    for channel in channels:
        await channel.close()
    return {
        "t0": t0,
        "t1": t1,
        "count": rounds * calls * len(impls),
        "calls": calls,
        "bursts": bursts,
    }


def stream_calls(impl: str) -> int:
    per_call = {"bare": BARE_STREAM_MESSAGES, "events_all": TICKER_COUNT + 4}
    per = per_call.get(impl, TICKER_COUNT + 1)
    return max(STREAMS, round(STREAM_TARGET_MESSAGES / per / STREAMS) * STREAMS)


async def client_stream(impl: str, target: str, calls: int) -> dict[str, Any]:
    pb = _pb()
    from workflow_client._pb import workflow_pb2_grpc as pb_grpc

    channel = grpc_channel(target)
    if impl == "bare":
        # What the bare server streams back: a typical STREAM event of the ticker, serialized.
        sample = pb.WorkflowEvent(
            run_id="0" * 32, sequence=5, kind=pb.EVENT_KIND_STREAM, type="Progress", step="tick"
        )
        sample.data.update({"n": 1, "count": TICKER_COUNT})
        sample.time.GetCurrentTime()
        payload = sample.SerializeToString()
        call = channel.unary_stream(
            f"/{BARE_SERVICE}/Stream",
            request_serializer=None,
            response_deserializer=pb.WorkflowEvent.FromString,
        )

        async def one() -> int:
            n = 0
            async for ev in call(payload, timeout=CALL_TIMEOUT_S):
                if ev.kind != pb.EVENT_KIND_STREAM:
                    raise RuntimeError("bad bare stream message")
                n += 1
            if n != BARE_STREAM_MESSAGES:
                raise RuntimeError(f"bare stream: {n} messages, expected {BARE_STREAM_MESSAGES}")
            return n
    else:
        call = pb_grpc.WorkflowServiceStub(channel).StreamEvents
        req = pb.StreamEventsRequest(start=pb.RunWorkflowRequest(workflow="ticker"))
        req.start.input.update({"count": TICKER_COUNT, "interval_ms": 0})
        if impl == "events_stream":
            req.kinds.append(pb.EVENT_KIND_STREAM)
        check = ticker_checker(pb, TICKER_COUNT, all_kinds=impl == "events_all")

        async def one() -> int:
            events = [ev async for ev in call(req, timeout=CALL_TIMEOUT_S)]
            problem = check(events)
            if problem:
                raise RuntimeError(f"StreamEvents: {problem}")
            return len(events)

    tune_gc()
    await spread(STREAMS, STREAMS, one)
    t0 = await ready_then_go()
    messages = await spread(calls, STREAMS, one)
    t1 = time.time()
    await channel.close()
    return {"t0": t0, "t1": t1, "count": messages, "calls": calls}


def ticker_checker(pb: Any, count: int, all_kinds: bool) -> Callable[[list[Any]], str | None]:
    """What a complete stream of a ticker run looks like; returns what is wrong, or None."""
    stream_kind, ok_kind = pb.EVENT_KIND_STREAM, pb.EVENT_KIND_RUN_SUCCEEDED

    def check(events: list[Any]) -> str | None:
        if not events:
            return "no events"
        last = events[-1]
        if last.kind != ok_kind:
            return f"ended with {pb.EventKind.Name(last.kind)}, not RUN_SUCCEEDED"
        if last.data["result"] != count:
            return f"result {last.data['result']!r}, expected {count}"
        seqs = [ev.sequence for ev in events]
        ticks = [ev for ev in events if ev.kind == stream_kind]
        if len(ticks) != count or [int(t.data["n"]) for t in ticks] != list(range(1, count + 1)):
            return f"{len(ticks)} STREAM events (expected {count}, n = 1..{count})"
        if all_kinds:
            if seqs != list(range(1, len(events) + 1)):
                return f"sequences not contiguous from 1: {seqs[:5]}..{seqs[-3:]}"
            if len(events) != count + 4:
                return f"{len(events)} events, expected {count + 4}"
        else:
            if any(b <= a for a, b in itertools.pairwise(seqs)):
                return "sequences not increasing"
            if len(events) != count + 1:
                return f"{len(events)} events, expected {count + 1}"
        return None

    return check


async def client_linear(impl: str, target: str, waves: int) -> dict[str, Any]:
    if impl == "llama":
        import aiohttp

        url = f"http://{target}/workflows/linear/run"
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=LINEAR_CLIENTS),
            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S),
        )

        async def one() -> int:
            async with session.post(url, json={}) as resp:
                body = await resp.json()
            result = (body.get("result") or {}).get("value", {}).get("result")
            if resp.status != 200 or body.get("status") != "completed" or result != "done":
                raise RuntimeError(f"llama run: HTTP {resp.status} {body!r}")
            return 1

        async def close() -> None:
            await session.close()
    else:
        pb = _pb()
        from workflow_client._pb import workflow_pb2_grpc as pb_grpc

        channel = grpc_channel(target)
        call = pb_grpc.WorkflowServiceStub(channel).RunWorkflow
        req = pb.RunWorkflowRequest(workflow="linear", wait=True)
        ok = pb.RUN_STATUS_SUCCEEDED

        async def one() -> int:
            resp = await call(req, timeout=CALL_TIMEOUT_S)
            if resp.run.status != ok or resp.run.result.string_value != "done":
                raise RuntimeError(f"bad RunWorkflow response {resp!r}")
            return 1

        async def close() -> None:
            await channel.close()

    async def wave(n: int = LINEAR_CLIENTS) -> int:
        return sum(await asyncio.gather(*[one() for _ in range(n)]))

    tune_gc()
    await wave(LINEAR_WARMUP)
    t0 = await ready_then_go()
    runs = 0
    for _ in range(waves):
        runs += await wave()
    t1 = time.time()
    await close()
    return {"t0": t0, "t1": t1, "count": runs, "calls": runs}


async def client_ticker_10k(target: str, runs: int) -> dict[str, Any]:
    """``runs`` concurrent ticker streams; a failed run is counted and reported, not raised."""
    import grpc

    pb = _pb()
    from workflow_client._pb import workflow_pb2_grpc as pb_grpc

    channel = grpc_channel(target)
    call = pb_grpc.WorkflowServiceStub(channel).StreamEvents

    def request(count: int, interval_ms: int) -> Any:
        req = pb.StreamEventsRequest(start=pb.RunWorkflowRequest(workflow="ticker"))
        req.start.input.update({"count": count, "interval_ms": interval_ms})
        return req

    check = ticker_checker(pb, TICKER["count"], all_kinds=True)
    req = request(TICKER["count"], TICKER["interval_ms"])
    spans: list[tuple[float, float]] = []
    problems: dict[str, int] = {}

    async def one() -> int:
        try:
            events = [ev async for ev in call(req, timeout=CALL_TIMEOUT_S)]
        except grpc.aio.AioRpcError as e:
            problem: str | None = f"{e.code().name}: {e.details()}"
            events = []
        else:
            problem = check(events)
        if problem:
            problems[problem] = problems.get(problem, 0) + 1
            return 0
        # Server-side times of RUN_STARTED and the terminal event: how many overlapped.
        first, last = events[0].time, events[-1].time
        spans.append((first.seconds + first.nanos / 1e9, last.seconds + last.nanos / 1e9))
        return len(events)

    tune_gc()
    warm = ticker_checker(pb, 2, all_kinds=True)
    for _ in range(20):
        problem = warm([ev async for ev in call(request(2, 0), timeout=CALL_TIMEOUT_S)])
        if problem:
            raise RuntimeError(f"warm-up run: {problem}")
    t0 = await ready_then_go()
    counts = await asyncio.gather(*[one() for _ in range(runs)])
    t1 = time.time()
    await channel.close()
    return {
        "t0": t0,
        "t1": t1,
        "count": sum(counts),
        "calls": runs,
        "ok_runs": len(spans),
        "problems": problems,
        "spans": spans,
    }


def client(case: str, impl: str, target: str, loop: str, share: int, result_file: str) -> None:
    async def go() -> dict[str, Any]:
        if case == "unary":
            res = await client_unary(impl, target, share)
        elif case == "stream":
            res = await client_stream(impl, target, share)
        elif case == "linear":
            res = await client_linear(impl, target, share)
        elif case == "ticker_10k":
            res = await client_ticker_10k(target, share)
        elif case == "overhead":
            res = await client_overhead(target, share, BURST_ROUNDS)
        else:
            raise ValueError(case)
        res["loop"] = loop_name()
        res["cpu_s"] = time.process_time() - CPU_AT_GO[0]  # all threads of this client
        return res

    result = loop_runner(loop)(go())
    # A file, not stdout: ticker_10k's result carries every run's span (hundreds of kB).
    with open(result_file, "w") as f:
        json.dump(result, f)
    print("DONE", flush=True)


# ---- the parent ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    case: str
    impl: str
    server: str  # --serve kind
    unit: str
    label: str
    store: str = ""  # ours: "sqlite" (the default store, in a fresh directory) or "memory"
    workflows: str = "examples:WORKFLOWS"
    clients: int = 1

    @property
    def key(self) -> str:
        return f"{self.case}/{self.impl}/{self.store}"

    @property
    def name(self) -> str:
        return f"{self.label} [{self.store}]" if self.store else self.label


STORES = ("sqlite", "memory")


def make_plan(stores: list[str]) -> list[Config]:
    plan: list[Config] = []

    def ours(case: str, impl: str, unit: str, label: str, **kw: Any) -> None:
        plan.extend(Config(case, impl, "ours", unit, label, store, **kw) for store in stores)

    plan.append(Config("unary", "bare", "bare", "calls/s", "bare unary echo"))
    ours("unary", "run_echo", "calls/s", "RunWorkflow echo wait")
    plan.append(Config("stream", "bare", "bare", "msgs/s", "bare stream x100"))
    ours("stream", "events_all", "msgs/s", "StreamEvents all kinds")
    ours("stream", "events_stream", "msgs/s", "StreamEvents kinds=STREAM")
    plan.append(Config("linear", "llama", "llama", "runs/s", "llama-agents-server HTTP"))
    ours("linear", "ours", "runs/s", "ours RunWorkflow wait", workflows="bench_workflows:WORKFLOWS")
    ours("ticker_10k", "ours", "MiB peak RSS", "ours 10k streams", clients=TICKER_10K_CLIENTS)
    ours("overhead", "bursts", "calls/s", "RunWorkflow echo wait")
    ours("instructions", "run_echo", "instr/call", "RunWorkflow echo wait")
    ours("instructions", "run_echo_am", "instr/call", "RunWorkflow echo wait, auth+metrics")
    ours("instructions", "run_echo_ops", "instr/call", "RunWorkflow, auth+metrics+tracing")
    ours("instructions", "run_echo_ops_sampled", "instr/call", "RunWorkflow, a+m+tracing 1/10")
    return plan


CASES = ("unary", "stream", "linear", "ticker_10k", "overhead", "instructions")
# The overhead case's servers, plain first, and their labels.
BURST_IMPLS = {
    "run_echo": "",
    "run_echo_am": ", auth+metrics",
    "run_echo_ops": ", auth+metrics+tracing",
    "run_echo_ops_sampled": ", auth+metrics+tracing 1/10",
}


def share_for(cfg: Config) -> int:
    """The timed work each client process of ``cfg`` does."""
    if cfg.case == "unary":
        return UNARY_CALLS // cfg.clients
    if cfg.case == "stream":
        return stream_calls(cfg.impl) // cfg.clients
    if cfg.case == "linear":
        return LINEAR_WAVES
    return TICKER_RUNS // cfg.clients


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every 20 ms (VmHWM is read as well, at the end)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.peak_kb = max(self.peak_kb, proc_status(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            self.halt.wait(0.02)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    log: Any
    port: int
    data_dir: str
    loop: str = ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The server loads bench_workflows (bench/) and the service package (repo root).
    paths = [BENCH_DIR, ROOT, env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def start_server(cfg: Config, loop: str, prefix: tuple[str, ...] = ()) -> Server:
    """A fresh server for ``cfg``; ``prefix``: a command to run it under (valgrind)."""
    port = free_port()
    log = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (Server.stop closes it)
    data_dir = tempfile.mkdtemp(prefix="service-bench-")
    store = f"sqlite:///{data_dir}/runs.db" if cfg.store == "sqlite" else cfg.store
    cmd = [*prefix, sys.executable, os.path.abspath(__file__), "--serve", cfg.server]
    cmd += ["--loop", loop, "--port", str(port), "--workflows", cfg.workflows]
    cmd += ["--store", store or "memory"]
    env = child_env()
    if cfg.impl in OPS_IMPLS:
        env.update(WORKFLOW_AUTH_TOKENS=OPS_TOKENS, WORKFLOW_METRICS_PORT=str(free_port()))
        if cfg.impl != "run_echo_am":
            env.update(WORKFLOW_TRACING="true")
        if cfg.impl == "run_echo_ops_sampled":
            env.update(
                OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.1"
            )
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
        cwd=data_dir,  # anything a server writes relative to its directory lands here
    )
    server = Server(proc, log, port, data_dir)
    start_timeout = SERVER_START_TIMEOUT_S * (5 if prefix else 1)
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        log.seek(0)
        text = log.read().decode(errors="replace")
        for line in text.splitlines():
            if "event=listening" in line:
                server.loop = line.rsplit("loop=", 1)[1].split()[0]
                return server
        if proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"server {cfg.server} exited at start-up:\n{text}")
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server {cfg.server} did not start in {start_timeout:.0f} s")


def read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("client timed out")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
        if ready:
            return proc.stdout.readline()


def client_cmd(cfg: Config, loop: str, target: str, share: int, result_file: str) -> list[str]:
    cmd = [sys.executable, os.path.abspath(__file__), "--client", cfg.case]
    cmd += ["--impl", cfg.impl, "--target", target, "--loop", loop]
    cmd += ["--share", str(share), "--result-file", result_file]
    cmd += ["--ticker-count", str(TICKER["count"])]
    cmd += ["--ticker-interval-ms", str(TICKER["interval_ms"])]
    return cmd


def measure_instructions(cfg: Config) -> dict[str, Any]:
    """CPU instructions the server executes per RunWorkflow, counted by callgrind over
    INSTRUCTION_CALLS timed calls (after the unary case's warm-up, which is not counted).
    Unlike a rate, the count hardly moves between runs on an idle machine (about 0.3%);
    other load still changes how the event loop batches its work (about 2%)."""
    out = os.path.join(tempfile.mkdtemp(prefix="service-bench-cg-"), "callgrind.out")
    prefix = ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}")
    server = start_server(cfg, "asyncio", prefix)
    err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed below)
    result_file = os.path.join(server.data_dir, "client.json")
    target = f"127.0.0.1:{server.port}"
    cmd = client_cmd(replace(cfg, case="unary"), "asyncio", target, INSTRUCTION_CALLS, result_file)
    client_proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=child_env()
    )
    pid = str(server.proc.pid)
    try:
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        if read_line(client_proc, deadline).strip() != "READY":
            err.seek(0)
            raise RuntimeError(f"{cfg.key} client failed before READY:\n{err.read()}")
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
        assert client_proc.stdin is not None
        client_proc.stdin.write("GO\n")
        client_proc.stdin.flush()
        if read_line(client_proc, deadline).strip() != "DONE":
            err.seek(0)
            raise RuntimeError(f"{cfg.key} client failed:\n{err.read()}")
        subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
        with open(result_file) as f:
            calls = json.load(f)["calls"]
        client_proc.wait(timeout=60)
    finally:
        if client_proc.poll() is None:
            client_proc.kill()
            client_proc.wait()
        err.close()
        server.stop()
    total = 0
    for name in os.listdir(os.path.dirname(out)):  # the dump, and the (empty) one at exit
        with open(os.path.join(os.path.dirname(out), name)) as f:
            total += sum(int(line.split()[1]) for line in f if line.startswith("totals:"))
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    return {"value": total / calls, "calls": calls, "server_loop": server.loop}


def measure_overhead(cfg: Config, loop: str) -> dict[str, Any]:
    """The four servers of BURST_IMPLS running at once, idle but for the client's bursts,
    which go to each in turn: one sample of BURST_ROUNDS bursts per server."""
    servers: dict[str, Server] = {}
    err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed below)
    client_proc: subprocess.Popen[str] | None = None
    try:
        for impl in BURST_IMPLS:
            servers[impl] = start_server(replace(cfg, case="unary", impl=impl), loop)
        target = ",".join(
            f"{impl}=127.0.0.1:{srv.port}@{srv.proc.pid}" for impl, srv in servers.items()
        )
        result_file = os.path.join(servers["run_echo"].data_dir, "client.json")
        cmd = client_cmd(cfg, loop, target, BURST_CALLS, result_file)
        client_proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            env=child_env(),
        )  # fmt: skip
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        for expected, then in (("READY", "GO\n"), ("DONE", "")):
            if read_line(client_proc, deadline).strip() != expected:
                err.seek(0)
                raise RuntimeError(f"{cfg.key} client failed before {expected}:\n{err.read()}")
            if then:
                assert client_proc.stdin is not None
                client_proc.stdin.write(then)
                client_proc.stdin.flush()
        with open(result_file) as f:
            result = json.load(f)
        client_proc.wait(timeout=60)
    finally:
        if client_proc is not None and client_proc.poll() is None:
            client_proc.kill()
            client_proc.wait()
        err.close()
        loops = {srv.loop for srv in servers.values()}
        for srv in servers.values():
            srv.stop()
    plain = [b["rate"] for b in result["bursts"]["run_echo"]]
    return {
        "value": statistics.median(plain),
        "bursts": result["bursts"],
        "server_loop": ",".join(sorted(loops)),
        "client_loop": result["loop"],
    }


def overhead_rows(
    cfg: Config, loop: str, runs: list[dict[str, Any]]
) -> tuple[list[tuple[str, ...]], list[str]]:
    """Table rows and target lines of the overhead case: per server, the median burst rate
    and its spread; for the others, the median over rounds of their rate over plain's in
    the same round, and of their server CPU time per call over plain's."""
    rows: list[tuple[str, ...]] = []
    targets: list[str] = []
    loops_ = f"{runs[0]['server_loop']}/{runs[0]['client_loop']}"

    def paired(impl: str, field: str, of: list[dict[str, Any]] = runs) -> list[float]:
        """Each burst's ``field`` over plain's burst of the same round."""
        return [
            b[field] / p[field]
            for run in of
            for b, p in zip(run["bursts"][impl], run["bursts"]["run_echo"], strict=True)
        ]

    for impl, suffix in BURST_IMPLS.items():
        bursts = [b for run in runs for b in run["bursts"][impl]]
        rates = [b["rate"] for b in bursts]
        cpu_us = statistics.median(b["cpu_per_call"] for b in bursts) * 1e6
        ratio = ""
        if impl != "run_echo":
            rate_ratios = paired(impl, "rate")
            share = statistics.median(rate_ratios)
            q1, _, q3 = statistics.quantiles(rate_ratios, n=4)
            cpu = statistics.median(paired(impl, "cpu_per_call"))
            per_repeat = ", ".join(
                f"{1 - statistics.median(paired(impl, 'rate', [run])):.1%}" for run in runs
            )
            ratio = f"{share:.1%} of plain, CPU/call {cpu - 1:+.1%}"
            if impl != "run_echo_ops_sampled":  # for reference only
                met = "met" if share > 0.9 else "MISSED"  # under 10%: strictly
                targets.append(
                    f"{cfg.label}{suffix} [{cfg.store}] ({loop}) costs under 10% of "
                    f"RunWorkflow throughput: {met}, {1 - share:.1%} (median of {len(rates)} "
                    f"paired bursts, middle half {1 - q3:.1%} to {1 - q1:.1%}; by repeat "
                    f"{per_repeat}); server CPU time per call {cpu - 1:+.1%}"
                )
        spread_ = f"{fmt(min(rates))}-{fmt(max(rates))}"
        name = f"{cfg.label}{suffix} [{cfg.store}]"
        rows.append(
            ("overhead", name, loops_, fmt(statistics.median(rates)), spread_, "calls/s", ratio,
             f"{cpu_us:.0f} us/call")
        )  # fmt: skip
    return rows, targets


def measure(cfg: Config, loop: str) -> dict[str, Any]:
    """One fresh server, its client(s), one sample."""
    server = start_server(cfg, loop)
    clients: list[subprocess.Popen[str]] = []
    errs: list[Any] = []
    sampler = RssSampler(server.proc.pid)
    try:
        target = f"127.0.0.1:{server.port}"
        for _ in range(cfg.clients):
            err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed below)
            result_file = os.path.join(server.data_dir, f"client{len(clients)}.json")
            cmd = client_cmd(cfg, loop, target, share_for(cfg), result_file)
            clients.append(
                subprocess.Popen(
                    cmd,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    env=child_env(),
                )
            )
            errs.append(err)
        deadline = time.monotonic() + CLIENT_TIMEOUT_S

        def failed(i: int, what: str) -> RuntimeError:
            clients[i].kill()
            errs[i].seek(0)
            return RuntimeError(f"{cfg.key} client {what}:\n{errs[i].read()}")

        for i, c in enumerate(clients):
            if read_line(c, deadline).strip() != "READY":
                raise failed(i, "failed before READY")
        base = proc_status(server.proc.pid)["VmRSS"]
        sampler.start()
        cpu0 = cpu_seconds(server.proc.pid)
        for c in clients:
            assert c.stdin is not None
            c.stdin.write("GO\n")
            c.stdin.flush()
        results = []
        for i, c in enumerate(clients):
            if read_line(c, deadline).strip() != "DONE":
                raise failed(i, "failed")
            with open(os.path.join(server.data_dir, f"client{i}.json")) as f:
                results.append(json.load(f))
        server_cpu = cpu_seconds(server.proc.pid) - cpu0
        status = proc_status(server.proc.pid)
        sampler.halt.set()
        sampler.join()
        for c in clients:
            c.wait(timeout=60)
    finally:
        sampler.halt.set()
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
        for e in errs:
            e.close()
        server.stop()
    wall = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    count = sum(r["count"] for r in results)
    sample: dict[str, Any] = {
        "value": count / wall,
        "wall_s": wall,
        "count": count,
        "calls": sum(r["calls"] for r in results),
        "server_loop": server.loop,
        "client_loop": ",".join(sorted({r["loop"] for r in results})),
        "server_cpu": server_cpu / wall,  # cores the server kept busy
        "client_cpu": sum(r["cpu_s"] for r in results) / wall,
        "rss_base_mib": base / 1024,
        "rss_peak_mib": max(status["VmHWM"], sampler.peak_kb) / 1024,
    }
    if cfg.case == "ticker_10k":
        spans = [tuple(s) for r in results for s in r["spans"]]
        problems: dict[str, int] = {}
        for r in results:
            for k, v in r["problems"].items():
                problems[k] = problems.get(k, 0) + v
        sample.update(
            value=sample["rss_peak_mib"],
            events_per_s=count / wall,
            ok_runs=sum(r["ok_runs"] for r in results),
            problems=problems,
            peak_concurrent=peak_overlap(spans),
        )
    return sample


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    """Most runs alive at once, from each run's (first event, terminal event) times."""
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    peak = live = 0
    for _, d in points:
        live += d
        peak = max(peak, live)
    return peak


def fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def parent(
    repeats: int, ticker_repeats: int, only: list[str] | None, loops: list[str], stores: list[str]
) -> None:
    plan = [c for c in make_plan(stores) if not only or c.case in only]
    skipped: list[str] = []
    if any(c.case == "instructions" for c in plan) and not (
        shutil.which("valgrind") and shutil.which("callgrind_control")
    ):
        plan = [c for c in plan if c.case != "instructions"]
        skipped.append("instructions: valgrind is not installed (apt-get install valgrind)")

    def wanted(cfg: Config) -> int:
        if cfg.case == "instructions":
            return 1  # a count, not a rate: it does not vary between repeats
        return ticker_repeats if cfg.case == "ticker_10k" else repeats

    def loops_of(cfg: Config) -> list[str]:
        return ["asyncio"] if cfg.case == "instructions" else loops

    samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    started = time.perf_counter()
    total = sum(wanted(cfg) * len(loops_of(cfg)) for cfg in plan)
    done = 0
    progress: dict[str, Any] = {"file": sys.stderr, "flush": True} if sys.stderr.isatty() else {}
    print(f"service benchmark: {total} measurements", file=sys.stderr, flush=True)
    # Interleaved: every configuration runs once per round, so drift hits all alike; every
    # other round in reverse order, so neither of two neighbours always runs first.
    for rnd in range(max(repeats, ticker_repeats)):
        for cfg in plan if rnd % 2 == 0 else plan[::-1]:
            if rnd >= wanted(cfg):
                continue
            for loop in loops_of(cfg):
                if cfg.case == "instructions":
                    sample = measure_instructions(cfg)
                elif cfg.case == "overhead":
                    sample = measure_overhead(cfg, loop)
                else:
                    sample = measure(cfg, loop)
                samples.setdefault((cfg.key, loop), []).append(sample)
                done += 1
                if progress:
                    elapsed = time.perf_counter() - started
                    print(f"\r  {done}/{total} measurements, {elapsed:.0f} s", end="", **progress)
    if progress:
        print(**progress)

    def med(key: str, loop: str, field: str = "value") -> float:
        return statistics.median(s[field] for s in samples[(key, loop)])

    header = (
        "case",
        "server / workload",
        "loop srv/cli",
        "median",
        "min-max",
        "unit",
        "ratio",
        "cpu srv/cli",
    )
    rows: list[tuple[str, ...]] = []
    targets: list[str] = []
    for cfg in plan:
        for loop in loops_of(cfg):
            runs = samples[(cfg.key, loop)]
            vals = [s["value"] for s in runs]
            value = statistics.median(vals)
            if cfg.case == "overhead":
                more, met_lines = overhead_rows(cfg, loop, runs)
                rows.extend(more)
                targets.extend(met_lines)
                continue
            if cfg.case == "instructions":
                ratio = ""
                if cfg.impl in OPS_IMPLS:
                    plain = med(f"instructions/run_echo/{cfg.store}", loop)
                    ratio = f"+{value / plain - 1:.1%} over plain"
                loops_ = f"{runs[0]['server_loop']}/asyncio"
                rows.append((cfg.case, cfg.name, loops_, fmt(value), "", cfg.unit, ratio, ""))
                continue
            loops_ = "/".join(
                ",".join(sorted({s[side] for s in runs})) for side in ("server_loop", "client_loop")
            )
            cpu = f"{med(cfg.key, loop, 'server_cpu'):.2f}/{med(cfg.key, loop, 'client_cpu'):.2f}"
            ratio = ""
            if cfg.case in ("unary", "stream") and cfg.impl != "bare":
                bare = med(f"{cfg.case}/bare/", loop)
                ratio = f"{value / bare:.0%} of bare"
                met = "met" if value / bare >= 0.6 else "MISSED"
                targets.append(
                    f"{cfg.name} ({loop}) at least 60% of bare: {met}, {value / bare:.0%} "
                    f"({fmt(value)} vs {fmt(bare)} {cfg.unit})"
                )
            if cfg.case == "linear" and cfg.impl == "ours":
                llama = med("linear/llama/", loop)
                ratio = f"{value / llama:.1f}x llama"
                met = "met" if value / llama >= 10 else "MISSED"
                targets.append(
                    f"{cfg.name} ({loop}) at least 10x llama-agents-server: {met}, "
                    f"{value / llama:.1f}x ({fmt(value)} vs {fmt(llama)} runs/s)"
                )
            spread_ = f"{fmt(min(vals))}-{fmt(max(vals))}"
            rows.append((cfg.case, cfg.name, loops_, fmt(value), spread_, cfg.unit, ratio, cpu))
            if cfg.case == "ticker_10k":
                ok = min(s["ok_runs"] for s in runs)
                calls = runs[0]["calls"]
                for extra, unit in (
                    (f"{ok:,}/{calls:,}", "runs complete and checked (worst repeat)"),
                    (fmt(med(cfg.key, loop, "peak_concurrent")), "peak concurrent runs"),
                    (fmt(med(cfg.key, loop, "count")), "events delivered"),
                    (fmt(med(cfg.key, loop, "events_per_s")), "events/s"),
                    (fmt(med(cfg.key, loop, "wall_s")), "s wall"),
                    (fmt(med(cfg.key, loop, "rss_base_mib")), "MiB RSS before the load"),
                ):
                    rows.append((cfg.case, cfg.name, loops_, extra, "", unit, "", ""))
                problems: dict[str, int] = {}
                for s in runs:
                    for k, v in s["problems"].items():
                        problems[k] = problems.get(k, 0) + v
                met = (
                    "met"
                    if ok == calls and not problems and max(vals) < RSS_LIMIT_MIB
                    else "MISSED"
                )
                targets.append(
                    f"{cfg.name} ({loop}): {met}, {ok:,}/{calls:,} runs complete with every "
                    f"event in the worst repeat; peak server RSS {fmt(value)} MiB median, "
                    f"{fmt(max(vals))} MiB worst (limit {RSS_LIMIT_MIB:.0f} MiB)"
                    + (f"; problems: {problems}" if problems else "")
                )
    print()
    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    versions = []
    for dist in ("grpcio", "protobuf", LLAMA_DIST, "llama-index-workflows", "uvicorn", "uvloop"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} not installed")
    print(", ".join(versions))
    print(f"CPUs: {os.cpu_count()}  Platform: {platform.platform()}")
    print(
        f"Median of {repeats} repeats ({ticker_repeats} for ticker_10k: count="
        f"{TICKER['count']}, interval_ms={TICKER['interval_ms']}), each with a fresh server "
        "process and fresh client process(es) on loopback.\n'loop srv/cli': the event loop "
        "each side reported; 'cpu srv/cli': CPU cores kept busy during the timed part\n"
        "(server, all client processes), in the overhead case the server's CPU time per "
        "call;\n[sqlite]: the default store, in a fresh directory; [memory]: --store memory."
    )
    print()
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print()
    print("Targets:")
    for t in targets:
        print(f"  - {t}")
    for note in skipped:
        print(f"Skipped: {note}")
    print(f"Total bench time: {time.perf_counter() - started:.0f} s")


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeats", type=int, default=3, help="repeats per configuration")
    ap.add_argument("--only", nargs="*", choices=CASES, help="cases to run (default: all)")
    ap.add_argument("--loops", nargs="*", choices=LOOPS, help="loops (default: both)")
    ap.add_argument(
        "--ticker-repeats", type=int, default=1, help="repeats of ticker_10k (about 1 min each)"
    )
    ap.add_argument(
        "--stores",
        nargs="*",
        choices=STORES,
        help="our server's stores (default: sqlite, the server's default)",
    )
    ap.add_argument("--ticker-count", type=int, default=TICKER["count"], help="ticker_10k count")
    ap.add_argument(
        "--ticker-interval-ms",
        type=int,
        default=TICKER["interval_ms"],
        help="ticker_10k interval_ms",
    )
    child = ap.add_argument_group("child mode (used by the parent)")
    child.add_argument("--serve", choices=("bare", "ours", "llama"))
    child.add_argument("--port", type=int, default=0)
    child.add_argument("--workflows", default="examples:WORKFLOWS")
    child.add_argument("--store", default="memory")
    child.add_argument("--client", choices=CASES)
    child.add_argument("--impl", default="")
    child.add_argument("--target", default="")
    child.add_argument("--share", type=int, default=0, help="timed work of one client")
    child.add_argument("--loop", choices=LOOPS, default="asyncio")
    child.add_argument("--result-file", default="", help="where a client writes its result")
    args = ap.parse_args()
    TICKER.update(count=args.ticker_count, interval_ms=args.ticker_interval_ms)
    if args.serve:
        serve(args.serve, args.loop, args.port, args.workflows, args.store)
    elif args.client:
        client(args.client, args.impl, args.target, args.loop, args.share, args.result_file)
    else:
        if args.repeats < 1 or args.ticker_repeats < 1:
            ap.error("repeats must be at least 1")
        loops = args.loops or [lp for lp in LOOPS if lp == "asyncio" or has_uvloop()]
        stores = args.stores or ["sqlite"]
        parent(args.repeats, args.ticker_repeats, args.only, loops, stores)


if __name__ == "__main__":
    main()
