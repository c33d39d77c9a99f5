import asyncio

from pydantic import Field

from engine import Context, Event, StartEvent, StopEvent, Workflow, step


class TickerInput(StartEvent):
    count: int = Field(10, ge=0, le=100_000, description="progress events to write")
    interval_ms: int = Field(
        100, ge=0, le=60_000, description="pause before each tick (0: none, but other runs go on)"
    )


class Progress(Event):
    n: int
    count: int


class TickerWorkflow(Workflow):
    """Writes `count` progress events to the stream, one every `interval_ms`, and returns
    `count`."""

    @step
    async def tick(self, ctx: Context, ev: TickerInput) -> StopEvent:
        pause = ev.interval_ms / 1000
        for n in range(1, ev.count + 1):
            # sleep(0) still yields: a long run of ticks never holds up the event loop.
            await asyncio.sleep(pause)
            ctx.write_event_to_stream(Progress(n=n, count=ev.count))
        return StopEvent(result=ev.count)
