from pydantic import Field

from engine import ConstantDelayRetryPolicy, Context, StartEvent, StopEvent, Workflow, step


class FlakyInput(StartEvent):
    failures: int = Field(2, ge=0, le=10, description="attempts that fail before one succeeds")


class FlakyError(RuntimeError):
    """The simulated transient failure."""


class FlakyWorkflow(Workflow):
    """Fails its first `failures` attempts; its retry policy (5 attempts) carries it through."""

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=5, delay=0.05))
    async def attempt(self, ctx: Context, ev: FlakyInput) -> StopEvent:
        async with ctx.store.edit() as state:
            state["attempts"] = tried = state.get("attempts", 0) + 1
        if tried <= ev.failures:
            raise FlakyError(f"transient failure {tried} of {ev.failures}")
        return StopEvent(result={"attempts": tried})
