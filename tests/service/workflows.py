"""Workflows that only the service tests serve."""

import asyncio

from opentelemetry import trace

from engine import Context, HumanResponseEvent, StartEvent, StopEvent, Workflow, step


class SleepInput(StartEvent):
    seconds: float = 0.2


class SleepWorkflow(Workflow):
    """Sleeps, then returns how long it slept."""

    @step
    async def sleep(self, ev: SleepInput) -> StopEvent:
        await asyncio.sleep(ev.seconds)
        return StopEvent(result=ev.seconds)


class Boom(StartEvent):
    message: str = "boom"


class FailingWorkflow(Workflow):
    """Its only step raises."""

    @step
    async def explode(self, ev: Boom) -> StopEvent:
        raise ValueError(ev.message)


class Answer(HumanResponseEvent):
    response: str


class LateWaitWorkflow(Workflow):
    """Waits a while before it asks for an Answer, so one can arrive before the wait."""

    external_events = (Answer,)

    @step
    async def ask(self, ctx: Context, ev: SleepInput) -> StopEvent:
        await asyncio.sleep(ev.seconds)
        answer = await ctx.wait_for_event(Answer, timeout=None)
        return StopEvent(result=answer.response)


class SpanWorkflow(Workflow):
    """Returns the id of the span current while its step runs (0: none), after annotating
    that span as a step's own code would."""

    @step
    async def look(self, ev: StartEvent) -> StopEvent:
        span = trace.get_current_span()
        span.set_attribute("app.kept", ["a", "b"])
        span.set_attribute("app.dropped", {"not": "an attribute value"})  # type: ignore[arg-type]
        span.add_event("looked", {"app.n": 1})
        return StopEvent(result=format(span.get_span_context().span_id, "016x"))


class SizedInput(StartEvent):
    size: int = 10


class SizedResultWorkflow(Workflow):
    """Returns a string of ``size`` characters."""

    @step
    async def make(self, ev: SizedInput) -> StopEvent:
        return StopEvent(result="x" * ev.size)


TEST_WORKFLOWS: dict[str, Workflow] = {
    "sized_result": SizedResultWorkflow(),
    "sleep": SleepWorkflow(),
    "failing": FailingWorkflow(),
    "late_wait": LateWaitWorkflow(),
    "current_span": SpanWorkflow(),
}
