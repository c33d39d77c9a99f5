"""Spec 5: human in the loop with ctx.wait_for_event and with InputRequired/HumanResponse steps."""

import asyncio

import pytest

from engine import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    RunStatus,
    StartEvent,
    StepFailedError,
    StopEvent,
    WaitForEventTimeoutError,
    Workflow,
    WorkflowNotRunningError,
    step,
)

from .helpers import outcome, wait_until


class ApprovalWorkflow(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("item", ev.item)
        answer = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix="Approve?"),
            timeout=60,
        )
        return StopEvent(result=f"{await ctx.store.get('item')}:{answer.response}")


class LateWaitWorkflow(Workflow):
    """Starts waiting only after a while, so an answer can arrive first."""

    @step
    async def ask_late(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(0.02)
        answer = await ctx.wait_for_event(
            HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="late?")
        )
        return StopEvent(result=answer.response)


class FilteredWaitWorkflow(Workflow):
    @step
    async def ask_alice(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix="Alice?"),
            requirements={"user": "alice"},
        )
        return StopEvent(result=(answer.user, answer.response))


class ShortWaitWorkflow(Workflow):
    @step
    async def impatient(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="quick!"), timeout=0.05
        )
        return StopEvent(result=answer.response)


class AskEvent(InputRequiredEvent):
    question: str


class AnswerEvent(HumanResponseEvent):
    answer: str


class StepPatternWorkflow(Workflow):
    """The llama-index pattern: return InputRequiredEvent, handle HumanResponseEvent."""

    @step
    async def question(self, ctx: Context, ev: StartEvent) -> AskEvent:
        await ctx.store.set("topic", ev.topic)
        return AskEvent(question=f"Proceed with {ev.topic}?")

    @step
    async def answered(self, ctx: Context, ev: AnswerEvent) -> StopEvent:
        return StopEvent(result=(await ctx.store.get("topic"), ev.answer))


class TwoQuestionsWorkflow(Workflow):
    @step
    async def both(self, ctx: Context, ev: StartEvent) -> StopEvent:
        first = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix="first?"),
            requirements={"q": 1},
        )
        second = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix="second?"),
            requirements={"q": 2},
        )
        return StopEvent(result=[first.response, second.response])


class Ping(Event):
    pass


class WaiterAndStepWorkflow(Workflow):
    """One step waits for Ping while another step accepts Ping."""

    external_events = (Ping,)

    @step
    async def waits_for_ping(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.wait_for_event(Ping)
        return StopEvent(result="waiter")

    @step
    async def takes_ping(self, ev: Ping) -> StopEvent:
        return StopEvent(result="step")


async def next_input_request(handler) -> InputRequiredEvent:  # type: ignore[no-untyped-def]
    async for ev in handler.stream_events():
        if isinstance(ev, InputRequiredEvent):
            return ev
    raise AssertionError("the stream ended without an InputRequiredEvent")


async def test_wait_for_event_writes_waiter_event_and_suspends_until_answered() -> None:
    handler = ApprovalWorkflow().run(item="invoice")
    request = await asyncio.wait_for(next_input_request(handler), 1)
    assert request.prefix == "Approve?"
    assert handler.status is RunStatus.WAITING_FOR_INPUT
    # It stays suspended.
    await asyncio.sleep(0.02)
    assert not handler.done()
    assert handler.status is RunStatus.WAITING_FOR_INPUT

    handler.ctx.send_event(HumanResponseEvent(response="yes"))
    assert handler.status is RunStatus.RUNNING
    assert await asyncio.wait_for(handler, 1) == "invoice:yes"
    assert handler.status is RunStatus.SUCCEEDED

    events = [ev async for ev in handler.stream_events()]
    assert [type(e).__name__ for e in events] == ["InputRequiredEvent", "StopEvent"]
    with pytest.raises(WorkflowNotRunningError):
        handler.ctx.send_event(HumanResponseEvent(response="too late"))


async def test_event_sent_before_the_wait_began_is_kept_for_it() -> None:
    handler = LateWaitWorkflow().run()
    await asyncio.sleep(0)
    handler.ctx.send_event(HumanResponseEvent(response="early bird"))
    assert handler.status is RunStatus.RUNNING
    assert await asyncio.wait_for(handler, 1) == "early bird"
    # The wait returned at once: its waiter event was never needed.
    assert [type(e).__name__ for e in [ev async for ev in handler.stream_events()]] == ["StopEvent"]


async def test_requirements_filter_the_events_a_wait_accepts() -> None:
    handler = FilteredWaitWorkflow().run()
    await asyncio.wait_for(next_input_request(handler), 1)
    handler.ctx.send_event(HumanResponseEvent(user="bob", response="no"))
    await asyncio.sleep(0.01)
    assert not handler.done()
    assert handler.status is RunStatus.WAITING_FOR_INPUT
    handler.ctx.send_event(HumanResponseEvent(user="alice", response="yes"))
    assert await asyncio.wait_for(handler, 1) == ("alice", "yes")


async def test_requirements_pick_among_events_sent_early() -> None:
    handler = TwoQuestionsWorkflow().run()
    await asyncio.sleep(0)
    handler.ctx.send_event(HumanResponseEvent(q=2, response="B"))
    handler.ctx.send_event(HumanResponseEvent(q=1, response="A"))
    assert await asyncio.wait_for(handler, 1) == ["A", "B"]


async def test_wait_timeout_fails_the_run() -> None:
    handler = ShortWaitWorkflow().run()
    err = await asyncio.wait_for(outcome(handler), 1)
    assert isinstance(err, StepFailedError)
    assert "impatient" in str(err)
    assert isinstance(err.__cause__, WaitForEventTimeoutError)
    assert "HumanResponseEvent" in str(err.__cause__)
    assert handler.status is RunStatus.FAILED


async def test_step_returning_input_required_and_step_accepting_human_response() -> None:
    handler = StepPatternWorkflow().run(topic="deploy")
    request = await asyncio.wait_for(next_input_request(handler), 1)
    assert isinstance(request, AskEvent)
    assert request.question == "Proceed with deploy?"
    await wait_until(lambda: handler.status is RunStatus.WAITING_FOR_INPUT)
    await asyncio.sleep(0.01)
    assert not handler.done()

    handler.ctx.send_event(AnswerEvent(answer="go"))
    assert handler.status is RunStatus.RUNNING
    assert await asyncio.wait_for(handler, 1) == ("deploy", "go")
    assert handler.status is RunStatus.SUCCEEDED


async def test_event_from_outside_goes_to_a_matching_wait_first() -> None:
    # As documented (and as in llama-index-workflows), even with step= a matching
    # wait_for_event takes the event before the named step.
    handler = WaiterAndStepWorkflow().run()
    await wait_until(lambda: handler.status is RunStatus.WAITING_FOR_INPUT)
    handler.ctx.send_event(Ping(), step="takes_ping")
    assert await asyncio.wait_for(handler, 1) == "waiter"


async def test_step_accepting_an_external_event_gets_it_when_nobody_waits() -> None:
    handler = WaiterAndStepWorkflow().run()
    handler.ctx.send_event(Ping(), step="takes_ping")
    assert await asyncio.wait_for(handler, 1) == "step"
