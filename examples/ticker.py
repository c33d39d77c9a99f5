import asyncio

from pydantic import Field

from engine import Context, Event, StartEvent, StopEvent, Workflow, step


class TickerInput(StartEvent):
    count: int = Field(10, ge=0, le=100_000, description="progress events to write")
    interval_ms: int = Field(100, ge=0, le=60_000, description="pause before each tick")


class Tick(Event):
    n: int
    count: int
    interval_ms: int


class Progress(Event):
    n: int
    count: int


class TickerWorkflow(Workflow):
    """Writes `count` progress events, one per step invocation, and returns `count`."""

    @step
    async def begin(self, ev: TickerInput) -> Tick | StopEvent:
        if ev.count == 0:
            return StopEvent(result=0)
        return Tick(n=1, count=ev.count, interval_ms=ev.interval_ms)

    @step
    async def tick(self, ctx: Context, ev: Tick) -> Tick | StopEvent:
        if ev.interval_ms:
            await asyncio.sleep(ev.interval_ms / 1000)
        ctx.write_event_to_stream(Progress(n=ev.n, count=ev.count))
        if ev.n == ev.count:
            return StopEvent(result=ev.count)
        return Tick(n=ev.n + 1, count=ev.count, interval_ms=ev.interval_ms)
