#!/usr/bin/env python
"""Store benchmark: the service's throughput with --store memory against --store sqlite.

Run with ``make bench`` or ``.venv/bin/python bench/store_bench.py [--repeats N]``. For each
store and repeat, a fresh server process (``python -m service``) and a separate client
process (this script with ``--client``) run on loopback:

  run_workflow  RunWorkflow(echo, wait=true), 64 calls in flight, 6,400 timed calls: runs/s
  stream        StreamEvents(start=ticker count=100 interval_ms=0), 64 streams at once,
                 256 timed streams of ~304 events each: events/s

The table gives the median of the repeats and sqlite as a share of memory (target: 70%):
the median of each repeat's ratio, the two stores of a repeat being measured back to back.

A second table measures the SQLite write path alone, in this process: the store's batch
writer applying batches of 16 runs (a run row, 4 events, the final update) to a file that
grows to ``--write-runs`` runs, with random ids (uuid4, as a client may choose) against the
time-ordered UUIDv7 ids the server and clients make: microseconds per run as the file grows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFLIGHT = 64
CALLS = 6_400
STREAMS = 256
TICKS = 100


async def _client(port: int, case: str) -> dict[str, float]:
    import grpc
    from google.protobuf import struct_pb2

    from service._pb import workflow_pb2 as pb
    from service._pb import workflow_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        if case == "run_workflow":
            data = struct_pb2.Struct()
            data.update({"message": "hi"})
            req = pb.RunWorkflowRequest(workflow="echo", input=data, wait=True)

            async def worker(n: int) -> None:
                for _ in range(n):
                    resp = await stub.RunWorkflow(req)
                    assert resp.run.status == pb.RUN_STATUS_SUCCEEDED

            await asyncio.gather(*(worker(10) for _ in range(INFLIGHT)))  # warm-up
            began = time.perf_counter()
            await asyncio.gather(*(worker(CALLS // INFLIGHT) for _ in range(INFLIGHT)))
            return {"rate": CALLS / (time.perf_counter() - began), "unit": "runs/s"}

        data = struct_pb2.Struct()
        data.update({"count": TICKS, "interval_ms": 0})
        start = pb.RunWorkflowRequest(workflow="ticker", input=data)
        received = 0

        async def one() -> None:
            nonlocal received
            last = 0
            async for ev in stub.StreamEvents(pb.StreamEventsRequest(start=start)):
                assert ev.sequence == last + 1
                last = ev.sequence
            assert ev.kind == pb.EVENT_KIND_RUN_SUCCEEDED
            received += last

        async def streams(n: int) -> None:
            queue = list(range(n))

            async def lane() -> None:
                while queue:
                    queue.pop()
                    await one()

            await asyncio.gather(*(lane() for _ in range(INFLIGHT)))

        await streams(INFLIGHT)  # warm-up
        received = 0
        began = time.perf_counter()
        await streams(STREAMS)
        return {"rate": received / (time.perf_counter() - began), "unit": "events/s"}


def _serve(store: str) -> tuple[subprocess.Popen[bytes], int, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service",
            "--port",
            "0",
            "--store",
            store,
            "--log-level",
            "INFO",  # a line per run start and end, as in production; read by a thread
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError("the server exited before listening")
        if m := re.search(rb"event=listening address=[\d.]+:(\d+) .* loop=(\w+)", line):
            # Keep reading the log so the server never blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(m.group(1)), m.group(2).decode()


def _measure(store: str, case: str) -> tuple[float, str]:
    proc, port, loop = _serve(store)
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--client", case, "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=600,
        )
        return float(json.loads(out.stdout)["rate"]), loop
    finally:
        proc.terminate()
        proc.wait(timeout=30)


WRITE_BATCH = 16


def _write_path(total: int, ordered: bool) -> list[float]:
    """Microseconds per run of SQLite writes, for each quarter of ``total`` runs."""
    import uuid
    from pathlib import Path

    sys.path.insert(0, ROOT)
    from engine.ids import new_run_id
    from service._pb import workflow_pb2 as pb
    from service.store import sqlite as store

    run = pb.Run(run_id=new_run_id(), workflow="echo", status=pb.RUN_STATUS_SUCCEEDED)
    run.input.update({"message": "hello"})
    event = pb.WorkflowEvent(run_id=run.run_id, sequence=2, kind=pb.EVENT_KIND_STEP_STARTED)
    event.data.update({"attempt": 1, "invocation": 1})
    run_blob, event_blob = run.SerializeToString(), event.SerializeToString()
    quarters: list[float] = []
    spent, ordinal = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        conn = store.open_database(Path(tmp) / "runs.db")
        while ordinal < total:
            batch: list[tuple[object, ...]] = []
            for _ in range(WRITE_BATCH):
                ordinal += 1
                run_id = new_run_id() if ordered else uuid.uuid4().hex
                now = time.time_ns()
                batch.append(("insert", run_id, ordinal, "echo", 1, "fp", now, "{}", run_blob))
                for seq in range(1, 5):
                    batch.append(("event", run_id, ordinal, seq, 0, 0, event_blob, seq == 4))
                batch.append(("update", run_id, 4, now, run_blob))
            began = time.perf_counter()
            store._apply(conn, batch, {}, [])
            spent += time.perf_counter() - began
            if ordinal % (total // 4) < WRITE_BATCH:
                quarters.append(spent / (total // 4) * 1e6)
                spent = 0.0
        conn.close()
    return quarters


def _print_write_path(total: int) -> None:
    random_ids = _write_path(total, ordered=False)
    ordered_ids = _write_path(total, ordered=True)
    print(f"\nSQLite writes, batches of {WRITE_BATCH} runs: microseconds per run as the file grows")
    print(f"{'runs in the file':<18}{'uuid4 ids':>12}{'UUIDv7 ids':>12}  UUIDv7/uuid4")
    for i, (r, o) in enumerate(zip(random_ids, ordered_ids, strict=True)):
        print(f"{(i + 1) * total // 4:<18,}{r:>12.1f}{o:>12.1f}  {o / r:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--client", choices=["run_workflow", "stream"])
    parser.add_argument("--port", type=int)
    parser.add_argument(
        "--write-runs", type=int, default=200_000, help="runs the write-path file grows to"
    )
    args = parser.parse_args()
    if args.client:
        sys.path.insert(0, ROOT)
        print(json.dumps(asyncio.run(_client(args.port, args.client))))
        return

    cases = {"run_workflow": "runs/s", "stream": "events/s"}
    results: dict[tuple[str, str], list[float]] = {}
    loops: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for case in cases:
                # Each repeat measures both stores back to back, in alternating order, so
                # drift of the machine's speed between repeats cancels out of their ratio.
                stores = ("memory", "sqlite") if i % 2 == 0 else ("sqlite", "memory")
                for store in stores:
                    url = "memory" if store == "memory" else f"sqlite:///{tmp}/runs-{i}-{case}.db"
                    rate, loop = _measure(url, case)
                    results.setdefault((case, store), []).append(rate)
                    loops.add(loop)
    print(
        f"\nstore benchmark: python {platform.python_version()}, {os.cpu_count()} cores, "
        f"server loop {'/'.join(sorted(loops))}, median of {args.repeats}"
    )
    print(
        f"{'case':<14}{'store':<8}{'median':>12}  {'unit':<9}{'range':>24}  "
        "sqlite/memory (median of paired repeats, range)"
    )
    for case, unit in cases.items():
        pairs = [
            s / m for s, m in zip(results[(case, "sqlite")], results[(case, "memory")], strict=True)
        ]
        for store in ("memory", "sqlite"):
            values = results[(case, store)]
            median = statistics.median(values)
            ratio = (
                f"{statistics.median(pairs):.0%} ({min(pairs):.0%}-{max(pairs):.0%})"
                if store == "sqlite"
                else ""
            )
            spread = f"{min(values):,.0f}-{max(values):,.0f}"
            print(f"{case:<14}{store:<8}{median:>12,.0f}  {unit:<9}{spread:>24}  {ratio}")
    print("target: sqlite keeps at least 70% of memory's throughput in both cases")
    _print_write_path(args.write_runs)


if __name__ == "__main__":
    main()
