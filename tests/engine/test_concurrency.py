"""Spec 4: worker limits, send_event fan-out and targeting, collect_events, many runs."""

import asyncio
import time

from engine import Context, Event, StartEvent, StopEvent, Workflow, step


class JobEvent(Event):
    n: int


class JobDone(Event):
    n: int


class Gauge:
    """Counts concurrent invocations and remembers the highest count seen."""

    def __init__(self) -> None:
        self.now = 0
        self.max = 0

    def enter(self) -> None:
        self.now += 1
        self.max = max(self.max, self.now)

    def leave(self) -> None:
        self.now -= 1


class WorkerLimitWorkflow(Workflow):
    JOBS = 20

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.gauge = Gauge()

    @step
    async def fan_out(self, ctx: Context, ev: StartEvent) -> JobEvent | None:
        for n in range(self.JOBS):
            ctx.send_event(JobEvent(n=n))
        return None

    @step(num_workers=4)
    async def work(self, ev: JobEvent) -> JobDone:
        self.gauge.enter()
        try:
            await asyncio.sleep(0.005)
        finally:
            self.gauge.leave()
        return JobDone(n=ev.n)

    @step
    async def gather_jobs(self, ctx: Context, ev: JobDone) -> StopEvent | None:
        done = ctx.collect_events(ev, [JobDone] * self.JOBS)
        if done is None:
            return None
        return StopEvent(result=sorted(e.n for e in done))


class SerialWorkflow(WorkerLimitWorkflow):
    @step(num_workers=1)
    async def work(self, ev: JobEvent) -> JobDone:
        self.gauge.enter()
        try:
            await asyncio.sleep(0.001)
        finally:
            self.gauge.leave()
        return JobDone(n=ev.n)


class NoticeEvent(Event):
    text: str


class Heard(Event):
    by: str
    text: str


class FanOutWorkflow(Workflow):
    """`ctx.send_event` reaches every step accepting the type, or only the named one."""

    @step
    async def announce(self, ctx: Context, ev: StartEvent) -> NoticeEvent | None:
        if ev.target is None:
            ctx.send_event(NoticeEvent(text="all"))
        else:
            ctx.send_event(NoticeEvent(text="one"), step=ev.target)
            ctx.send_event(NoticeEvent(text="two"), step=ev.target)
        return None

    @step
    async def listener_a(self, ev: NoticeEvent) -> Heard:
        return Heard(by="a", text=ev.text)

    @step
    async def listener_b(self, ev: NoticeEvent) -> Heard:
        return Heard(by="b", text=ev.text)

    @step
    async def listener_c(self, ev: NoticeEvent) -> Heard:
        return Heard(by="c", text=ev.text)

    @step
    async def tally(self, ctx: Context, ev: Heard) -> StopEvent | None:
        expected = 3 if ev.text == "all" else 2
        got = ctx.collect_events(ev, [Heard] * expected)
        if got is None:
            return None
        return StopEvent(result=sorted((h.by, h.text) for h in got))


class FirstEvent(Event):
    v: str


class SecondEvent(Event):
    v: str


class ThirdEvent(Event):
    v: str


class OrderedCollectWorkflow(Workflow):
    @step
    async def emit(self, ctx: Context, ev: StartEvent) -> FirstEvent | SecondEvent | ThirdEvent:
        # Sent in the opposite order to the one collect_events asks for.
        ctx.send_event(ThirdEvent(v="3"))
        ctx.send_event(SecondEvent(v="2"))
        await asyncio.sleep(0.005)
        return FirstEvent(v="1")

    @step
    async def join(
        self, ctx: Context, ev: FirstEvent | SecondEvent | ThirdEvent
    ) -> StopEvent | None:
        got = ctx.collect_events(ev, [FirstEvent, SecondEvent, ThirdEvent])
        async with ctx.store.edit() as state:
            state.setdefault("calls", []).append(None if got is None else "full")
        if got is None:
            return None
        return StopEvent(result=[(type(e).__name__, e.v) for e in got])


class NapWorkflow(Workflow):
    @step
    async def nap(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(0.02)
        return StopEvent(result=ev.i)


async def test_num_workers_bounds_concurrent_invocations_exactly() -> None:
    wf = WorkerLimitWorkflow()
    assert await asyncio.wait_for(wf.run(), 2) == list(range(20))
    assert wf.gauge.max == 4
    assert wf.gauge.now == 0


async def test_num_workers_one_runs_invocations_one_at_a_time() -> None:
    wf = SerialWorkflow()
    assert await asyncio.wait_for(wf.run(), 2) == list(range(20))
    assert wf.gauge.max == 1


async def test_worker_limit_is_per_run() -> None:
    # Two runs of one instance each get their own 4 workers.
    wf = WorkerLimitWorkflow()
    results = await asyncio.wait_for(asyncio.gather(wf.run(), wf.run()), 2)
    assert results == [list(range(20))] * 2
    assert wf.gauge.max == 8


async def test_send_event_goes_to_every_step_accepting_its_type() -> None:
    result = await asyncio.wait_for(FanOutWorkflow().run(target=None), 1)
    assert result == [("a", "all"), ("b", "all"), ("c", "all")]


async def test_send_event_with_step_goes_to_that_step_only() -> None:
    result = await asyncio.wait_for(FanOutWorkflow().run(target="listener_b"), 1)
    assert result == [("b", "one"), ("b", "two")]


async def test_collect_events_returns_events_in_the_order_asked() -> None:
    handler = OrderedCollectWorkflow().run()
    result = await asyncio.wait_for(handler, 1)
    assert result == [("FirstEvent", "1"), ("SecondEvent", "2"), ("ThirdEvent", "3")]
    # None until every expected type was there.
    assert await handler.ctx.store.get("calls") == [None, None, "full"]


async def test_thousands_of_runs_share_one_loop_and_overlap() -> None:
    wf = NapWorkflow()
    began = time.perf_counter()
    results = await asyncio.wait_for(asyncio.gather(*(wf.run(i=i) for i in range(2000))), 10)
    elapsed = time.perf_counter() - began
    assert results == list(range(2000))
    # 2,000 sequential 20 ms sleeps would take 40 s.
    assert elapsed < 2.0, elapsed
