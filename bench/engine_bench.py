#!/usr/bin/env python
"""Throughput, latency and memory benchmark: ``engine`` against ``llama-index-workflows``.

Run with ``make bench`` (or ``.venv/bin/python bench/engine_bench.py``). The parent process
runs every (case, implementation, gc mode) in a fresh subprocess, several times, interleaved,
and prints the median of each. A child is this same script with ``--case``; it warms the
workload up once, times it once and prints one JSON line on stdout. ``--repeats`` (default 7)
and ``--llama-repeats`` (default 3) set how many subprocesses each median is taken over.

Cases
  a_linear   2,000 concurrent runs of StartEvent -> A -> B -> StopEvent, trivial steps
  b_sleep    1,000 concurrent runs of the same 3 steps, each awaiting asyncio.sleep(0.01)
  c_fanout   200 concurrent runs: one step sends 10 events to a num_workers=10 step, a third
             step gathers the 10 results with ctx.collect_events
  d_stream   100 concurrent runs, each writing 100 events to its stream; one consumer task
             per run iterates handler.stream_events() to the end
  e_floor    case a_linear's 3 hops without an engine: per run 3 tasks chained by asyncio.Queues
  e_floor_tasks  the same with no queue: each of the 3 tasks is started by the previous one
  rss        2,000 runs held in flight (their step awaits an asyncio.Event): RSS growth

GC modes
  default    the interpreter's defaults, untouched
  tuned      gc.set_threshold(50_000, 50, 100) at start-up, gc.collect(); gc.freeze()
             after the warm-up, as a long-running service would do
"""

import argparse
import asyncio
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

# Note: no ``from __future__ import annotations`` here. The workflow classes below are defined
# inside a function (once per library), so their annotations must be real objects, evaluated
# when the steps are defined.

GC_THRESHOLD = (50_000, 50, 100)
TIMEOUT_S = 300.0  # per-run timeout given to both libraries (llama's default is 45 s)

N_LINEAR = 2_000
N_SLEEP = 1_000
SLEEP_S = 0.01
N_FANOUT = 200
FANOUT = 10
N_STREAM = 100
STREAM_EVENTS = 100
N_FLOOR = 2_000
N_RSS = 2_000
N_WARMUP = 20

LLAMA_DIST = "llama-index-workflows"


# ---- the workflows, written once against the shared authoring API ------------------------


def load_api(impl: str) -> SimpleNamespace:
    """The authoring API of one library, under the same names."""
    if impl == "engine":
        import engine as mod

        return SimpleNamespace(
            Workflow=mod.Workflow,
            step=mod.step,
            Context=mod.Context,
            Event=mod.Event,
            StartEvent=mod.StartEvent,
            StopEvent=mod.StopEvent,
        )
    if impl == "llama":
        from workflows import Context, Workflow, step
        from workflows.events import Event, StartEvent, StopEvent

        return SimpleNamespace(
            Workflow=Workflow,
            step=step,
            Context=Context,
            Event=Event,
            StartEvent=StartEvent,
            StopEvent=StopEvent,
        )
    raise ValueError(f"unknown workflow implementation {impl!r}")


# Shared with the "hold" workflow of the RSS case: set up by the driver in the running loop.
HOLD = SimpleNamespace(gate=None, all_in=None, entered=0, target=0)


def define_workflows(api: SimpleNamespace) -> SimpleNamespace:
    """Build the benchmark workflow classes on ``api``; the code is the same for both."""
    step = api.step

    class AEvent(api.Event):
        pass

    class BEvent(api.Event):
        pass

    class WorkEvent(api.Event):
        i: int

    class DoneEvent(api.Event):
        i: int

    class TickEvent(api.Event):
        i: int

    class Linear(api.Workflow):
        @step
        async def begin(self, ev: api.StartEvent) -> AEvent:
            return AEvent()

        @step
        async def a(self, ev: AEvent) -> BEvent:
            return BEvent()

        @step
        async def b(self, ev: BEvent) -> api.StopEvent:
            return api.StopEvent(result=1)

    class Sleepy(api.Workflow):
        @step
        async def begin(self, ev: api.StartEvent) -> AEvent:
            await asyncio.sleep(SLEEP_S)
            return AEvent()

        @step
        async def a(self, ev: AEvent) -> BEvent:
            await asyncio.sleep(SLEEP_S)
            return BEvent()

        @step
        async def b(self, ev: BEvent) -> api.StopEvent:
            await asyncio.sleep(SLEEP_S)
            return api.StopEvent(result=1)

    class FanOut(api.Workflow):
        @step
        async def scatter(self, ctx: api.Context, ev: api.StartEvent) -> WorkEvent | None:
            for i in range(FANOUT):
                ctx.send_event(WorkEvent(i=i))
            return None

        @step(num_workers=FANOUT)
        async def work(self, ev: WorkEvent) -> DoneEvent:
            return DoneEvent(i=ev.i)

        @step
        async def gather(self, ctx: api.Context, ev: DoneEvent) -> api.StopEvent | None:
            done = ctx.collect_events(ev, [DoneEvent] * FANOUT)
            if done is None:
                return None
            return api.StopEvent(result=sum(d.i for d in done))

    class Streamer(api.Workflow):
        @step
        async def emit(self, ctx: api.Context, ev: api.StartEvent) -> api.StopEvent:
            for i in range(STREAM_EVENTS):
                ctx.write_event_to_stream(TickEvent(i=i))
            return api.StopEvent(result=STREAM_EVENTS)

    class Hold(api.Workflow):
        @step
        async def hold(self, ev: api.StartEvent) -> api.StopEvent:
            HOLD.entered += 1
            if HOLD.entered == HOLD.target:
                HOLD.all_in.set()
            await HOLD.gate.wait()
            return api.StopEvent(result=1)

    return SimpleNamespace(
        Linear=Linear,
        Sleepy=Sleepy,
        FanOut=FanOut,
        Streamer=Streamer,
        Hold=Hold,
        StopEvent=api.StopEvent,
        TickEvent=TickEvent,
    )


def make_workflow(cls: type) -> Any:
    return cls(timeout=TIMEOUT_S)


# ---- the cases: each returns (value, unit, extra) ------------------------------------------

Result = tuple[float, str, dict[str, Any]]


@dataclass
class Bench:
    impl: str
    flows: SimpleNamespace | None


async def run_many(wf: Any, n: int, expected: Any) -> float:
    t0 = time.perf_counter()
    results = await asyncio.gather(*[wf.run() for _ in range(n)])
    wall = time.perf_counter() - t0
    bad = [r for r in results if r != expected]
    if bad:
        raise RuntimeError(f"{len(bad)} runs returned an unexpected result, e.g. {bad[0]!r}")
    return wall


async def case_linear(b: Bench, warm: Callable[[], None]) -> Result:
    assert b.flows is not None
    wf = make_workflow(b.flows.Linear)
    await run_many(wf, N_WARMUP, 1)
    warm()
    wall = await run_many(wf, N_LINEAR, 1)
    return N_LINEAR / wall, "runs/s", {"wall_ms": wall * 1e3, "runs": N_LINEAR}


async def case_sleep(b: Bench, warm: Callable[[], None]) -> Result:
    assert b.flows is not None
    wf = make_workflow(b.flows.Sleepy)
    await run_many(wf, N_WARMUP, 1)
    warm()
    wall = await run_many(wf, N_SLEEP, 1)
    return N_SLEEP / wall, "runs/s", {"wall_ms": wall * 1e3, "runs": N_SLEEP}


async def case_fanout(b: Bench, warm: Callable[[], None]) -> Result:
    assert b.flows is not None
    wf = make_workflow(b.flows.FanOut)
    expected = sum(range(FANOUT))
    await run_many(wf, N_WARMUP, expected)
    warm()
    wall = await run_many(wf, N_FANOUT, expected)
    return N_FANOUT / wall, "runs/s", {"wall_ms": wall * 1e3, "runs": N_FANOUT}


async def stream_many(wf: Any, n: int, tick: type, stop: type) -> tuple[float, int]:
    async def consume(handler: Any) -> int:
        got = 0
        async for ev in handler.stream_events():
            if isinstance(ev, tick):
                got += 1
            elif not isinstance(ev, stop):
                raise RuntimeError(f"unexpected stream event {type(ev).__name__}")
        if await handler != STREAM_EVENTS:
            raise RuntimeError("unexpected run result")
        return got

    t0 = time.perf_counter()
    handlers = [wf.run() for _ in range(n)]
    counts = await asyncio.gather(*[asyncio.create_task(consume(h)) for h in handlers])
    wall = time.perf_counter() - t0
    if any(c != STREAM_EVENTS for c in counts):
        raise RuntimeError(f"a consumer missed stream events: {sorted(set(counts))}")
    return wall, sum(counts)


async def case_stream(b: Bench, warm: Callable[[], None]) -> Result:
    assert b.flows is not None
    wf = make_workflow(b.flows.Streamer)
    tick, stop = b.flows.TickEvent, b.flows.StopEvent
    await stream_many(wf, 5, tick, stop)
    warm()
    wall, events = await stream_many(wf, N_STREAM, tick, stop)
    extra = {"wall_ms": wall * 1e3, "runs": N_STREAM, "events": events}
    return events / wall, "events/s", extra


class Msg:
    """The floor's message: the cheapest object that still carries something."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


async def floor_queues(n: int) -> float:
    """Per run: three tasks chained by two asyncio.Queues; the first gets the start message
    as its argument, the third resolves the run's future."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def first(msg: Msg, outbox: asyncio.Queue[Msg]) -> None:
        outbox.put_nowait(Msg(msg.value))

    async def middle(inbox: asyncio.Queue[Msg], outbox: asyncio.Queue[Msg]) -> None:
        msg = await inbox.get()
        outbox.put_nowait(Msg(msg.value))

    async def last(inbox: asyncio.Queue[Msg], done: asyncio.Future[int]) -> None:
        msg = await inbox.get()
        done.set_result(msg.value)

    def start_run() -> asyncio.Future[int]:
        q1: asyncio.Queue[Msg] = asyncio.Queue()
        q2: asyncio.Queue[Msg] = asyncio.Queue()
        done: asyncio.Future[int] = loop.create_future()
        for coro in (first(Msg(1), q1), middle(q1, q2), last(q2, done)):
            task = loop.create_task(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return done

    return await time_floor(start_run, n)


async def floor_tasks(n: int) -> float:
    """Per run: three tasks, each started by the previous one with the message as its
    argument (no queue at all); the third resolves the run's future."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def spawn_task(coro: Coroutine[Any, Any, None]) -> None:
        task = loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def hop(stage: int, msg: Msg, done: asyncio.Future[int]) -> None:
        if stage == 3:
            done.set_result(msg.value)
        else:
            spawn_task(hop(stage + 1, Msg(msg.value), done))

    def start_run() -> asyncio.Future[int]:
        done: asyncio.Future[int] = loop.create_future()
        spawn_task(hop(1, Msg(1), done))
        return done

    return await time_floor(start_run, n)


async def time_floor(start_run: Callable[[], asyncio.Future[int]], n: int) -> float:
    t0 = time.perf_counter()
    results = await asyncio.gather(*[start_run() for _ in range(n)])
    wall = time.perf_counter() - t0
    if any(r != 1 for r in results):
        raise RuntimeError("floor run returned an unexpected result")
    return wall


async def case_floor(b: Bench, warm: Callable[[], None]) -> Result:
    await floor_queues(N_WARMUP)
    warm()
    wall = await floor_queues(N_FLOOR)
    return N_FLOOR / wall, "runs/s", {"wall_ms": wall * 1e3, "runs": N_FLOOR}


async def case_floor_tasks(b: Bench, warm: Callable[[], None]) -> Result:
    await floor_tasks(N_WARMUP)
    warm()
    wall = await floor_tasks(N_FLOOR)
    return N_FLOOR / wall, "runs/s", {"wall_ms": wall * 1e3, "runs": N_FLOOR}


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in kB."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


async def hold_many(wf: Any, n: int, measure: Callable[[], None] | None = None) -> None:
    HOLD.gate = asyncio.Event()
    HOLD.all_in = asyncio.Event()
    HOLD.entered = 0
    HOLD.target = n
    handlers = [wf.run() for _ in range(n)]
    await asyncio.wait_for(HOLD.all_in.wait(), 120)
    if measure is not None:
        measure()
    HOLD.gate.set()
    results = await asyncio.gather(*handlers)
    if any(r != 1 for r in results):
        raise RuntimeError("held run returned an unexpected result")


async def case_rss(b: Bench, warm: Callable[[], None]) -> Result:
    assert b.flows is not None
    wf = make_workflow(b.flows.Hold)
    await hold_many(wf, N_WARMUP)
    warm()
    gc.collect()  # same starting point in both gc modes; the runs below may collect or not
    before = proc_status()
    during: dict[str, int] = {}
    t0 = time.perf_counter()
    await hold_many(wf, N_RSS, lambda: during.update(proc_status()))
    wall = time.perf_counter() - t0
    after = proc_status()
    grown_kb = max(during["VmRSS"], after["VmHWM"]) - before["VmRSS"]
    mb_per_1k = grown_kb / 1024 / N_RSS * 1000
    extra = {
        "wall_ms": wall * 1e3,
        "runs": N_RSS,
        "rss_before_mb": before["VmRSS"] / 1024,
        "rss_in_flight_mb": during["VmRSS"] / 1024,
        "hwm_after_mb": after["VmHWM"] / 1024,
    }
    return mb_per_1k, "MB/1k runs", extra


CASES: dict[str, Callable[[Bench, Callable[[], None]], Coroutine[Any, Any, Result]]] = {
    "a_linear": case_linear,
    "b_sleep": case_sleep,
    "c_fanout": case_fanout,
    "d_stream": case_stream,
    "e_floor": case_floor,
    "e_floor_tasks": case_floor_tasks,
    "rss": case_rss,
}


def child(case: str, impl: str, gc_mode: str) -> None:
    tuned = gc_mode == "tuned"
    if tuned:
        gc.set_threshold(*GC_THRESHOLD)
    flows = None if impl == "asyncio" else define_workflows(load_api(impl))

    def warm() -> None:
        """Called once the warm-up is done, right before the timed part."""
        if tuned:
            gc.collect()
            gc.freeze()

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        value, unit, extra = await CASES[case](Bench(impl, flows), warm)
        return {
            "case": case,
            "impl": impl,
            "gc": gc_mode,
            "value": value,
            "unit": unit,
            "extra": extra,
            "loop": f"{type(loop).__module__}.{type(loop).__qualname__}",
            "gc_threshold": list(gc.get_threshold()),
        }

    out = asyncio.run(main())
    print(json.dumps(out), flush=True)


# ---- the parent: plan, run, aggregate, print -----------------------------------------------

PLAN: list[tuple[str, str]] = [
    ("a_linear", "engine"),
    ("a_linear", "llama"),
    ("b_sleep", "engine"),
    ("b_sleep", "llama"),
    ("c_fanout", "engine"),
    ("c_fanout", "llama"),
    ("d_stream", "engine"),
    ("d_stream", "llama"),
    ("e_floor", "asyncio"),
    ("e_floor_tasks", "asyncio"),
    ("rss", "engine"),
    ("rss", "llama"),
]
GC_MODES = ("default", "tuned")


def spawn(case: str, impl: str, gc_mode: str) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--case", case, "--impl", impl]
    cmd += ["--gc", gc_mode]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed:\n{proc.stderr}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def parent(repeats: int, llama_repeats: int, only: list[str] | None) -> None:
    plan = [(c, i) for c, i in PLAN if not only or c in only]

    def wanted(impl: str) -> int:
        return llama_repeats if impl == "llama" else repeats

    samples: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    loops: set[str] = set()
    started = time.perf_counter()
    total = sum(wanted(impl) for _, impl in plan) * len(GC_MODES)
    done = 0
    progress: dict[str, Any] = {"file": sys.stderr, "flush": True} if sys.stderr.isatty() else {}
    print(f"engine benchmark: {total} subprocesses", file=sys.stderr, flush=True)
    # Interleaved: every configuration runs once per round, so drift hits all alike.
    for rnd in range(max(repeats, llama_repeats)):
        for case, impl in plan:
            if rnd >= wanted(impl):
                continue
            for gc_mode in GC_MODES:
                res = spawn(case, impl, gc_mode)
                samples.setdefault((case, impl, gc_mode), []).append(res)
                loops.add(res["loop"])
                done += 1
                if progress:
                    elapsed = time.perf_counter() - started
                    print(f"\r  {done}/{total} subprocesses, {elapsed:.0f} s", end="", **progress)
    if progress:
        print(**progress)

    def median(key: tuple[str, str, str], field: str = "value") -> float:
        runs = samples[key]
        vals = [r["value"] if field == "value" else r["extra"][field] for r in runs]
        return statistics.median(vals)

    header = ("case", "impl", "gc", "median", "unit", "ours/llama", "of floor (queues; tasks)")
    rows: list[tuple[str, ...]] = []
    for case, impl in plan:
        for gc_mode in GC_MODES:
            key = (case, impl, gc_mode)
            value = median(key)
            unit = samples[key][0]["unit"]
            ratio = vs_floor = ""
            llama_key = (case, "llama", gc_mode)
            if impl == "engine" and llama_key in samples:
                ratio = f"{value / median(llama_key):.2f}x"
            if case == "a_linear":
                floors = [("e_floor", "asyncio", gc_mode), ("e_floor_tasks", "asyncio", gc_mode)]
                vs_floor = "; ".join(
                    f"{value / median(k):.2f}" if k in samples else "-" for k in floors
                )
            if case == "rss":
                unit += " (lower is better)"
            rows.append((case, impl, gc_mode, fmt(value), unit, ratio, vs_floor))
            if case == "b_sleep":
                wall = median(key, "wall_ms")
                ideal = 3 * SLEEP_S * 1e3
                unit = f"ms wall (ideal {ideal:.0f})"
                rows.append((case, impl, gc_mode, fmt(wall), unit, "", ""))

    try:
        llama_version = importlib.metadata.version(LLAMA_DIST)
    except importlib.metadata.PackageNotFoundError:
        llama_version = "not installed"
    print()
    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    kind = "uvloop" if any("uvloop" in lp for lp in loops) else "asyncio's default loop, no uvloop"
    print(f"Event loop: {', '.join(sorted(loops))} ({kind})")
    print(f"{LLAMA_DIST} {llama_version}")
    print(f"CPUs: {os.cpu_count()}  Platform: {platform.platform()}")
    print(
        f"gc 'tuned' = gc.set_threshold{GC_THRESHOLD} at start-up, "
        "gc.collect(); gc.freeze() after warm-up; 'default' = untouched "
        f"(threshold {gc.get_threshold()})"
    )
    print(
        f"Median of {repeats} repeats ({llama_repeats} for llama-index-workflows), each in a "
        f"fresh subprocess with one warm-up; per-run timeout {TIMEOUT_S:.0f} s for both."
    )
    print()
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print()
    print("ours/llama: engine's median over llama-index-workflows' median (same case, gc mode);")
    print(
        "of floor: the a_linear rate as a fraction of e_floor (3 tasks per run chained by"
        " asyncio.Queues)\n  and of e_floor_tasks (3 tasks per run, each started by the"
        " previous one; no queue)."
    )
    print(f"Total bench time: {time.perf_counter() - started:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--case", choices=sorted(CASES), help="run one case (child mode)")
    ap.add_argument("--impl", choices=("engine", "llama", "asyncio"), default="engine")
    ap.add_argument("--gc", choices=GC_MODES, default="default", dest="gc_mode")
    ap.add_argument("--repeats", type=int, default=7, help="repeats per configuration")
    ap.add_argument(
        "--llama-repeats", type=int, default=3, help="repeats of llama-index-workflows cases"
    )
    ap.add_argument("--only", nargs="*", choices=sorted(CASES), help="cases to run")
    args = ap.parse_args()
    if args.case:
        child(args.case, args.impl, args.gc_mode)
    else:
        if args.repeats < 1 or args.llama_repeats < 1:
            ap.error("repeats must be at least 1")
        parent(args.repeats, args.llama_repeats, args.only)


if __name__ == "__main__":
    main()
