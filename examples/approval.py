from engine import Context, InputRequiredEvent, StartEvent, StopEvent, Workflow, step
from engine import HumanResponseEvent as _HumanResponseEvent


class ApprovalInput(StartEvent):
    question: str


class HumanResponseEvent(_HumanResponseEvent):
    """A person's answer; "yes" approves."""

    response: str


class ApprovalWorkflow(Workflow):
    """Asks a person a question and waits for the answer (human in the loop)."""

    external_events = (HumanResponseEvent,)

    @step
    async def ask(self, ctx: Context, ev: ApprovalInput) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(question=ev.question, prefix=ev.question),
            timeout=None,
        )
        return StopEvent(result={"approved": answer.response == "yes", "response": answer.response})
