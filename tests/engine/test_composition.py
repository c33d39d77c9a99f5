"""Spec 8: a step runs another workflow; cancelling the parent cancels the child."""

import asyncio
import time

from engine import (
    ConstantDelayRetryPolicy,
    Context,
    RunStatus,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowHandler,
    step,
)

from .helpers import other_tasks, outcome, wait_until


class SquareChild(Workflow):
    @step
    async def square(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("input", ev.n)
        await asyncio.sleep(0.001)
        return StopEvent(result=ev.n * ev.n)


class FailingChild(Workflow):
    @step
    async def child_explodes(self, ev: StartEvent) -> StopEvent:
        raise ValueError("child broke")


class SleepingChild(Workflow):
    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.started = 0

    @step
    async def child_sleeps(self, ev: StartEvent) -> StopEvent:
        self.started += 1
        await asyncio.sleep(5)
        return StopEvent(result="child done")


class ParentWorkflow(Workflow):
    def __init__(self, child: Workflow, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.child = child
        self.child_handlers: list[WorkflowHandler] = []

    @step
    async def delegate(self, ctx: Context, ev: StartEvent) -> StopEvent:
        handler = self.child.run(n=ev.get("n", 0))
        self.child_handlers.append(handler)
        result = await handler
        await ctx.store.set("child_result", result)
        return StopEvent(result={"child": result, "parent_saw": ev.get("n", 0)})


class RetryingParentWorkflow(ParentWorkflow):
    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=3, delay=0.01))
    async def delegate(self, ctx: Context, ev: StartEvent) -> StopEvent:
        handler = self.child.run()
        self.child_handlers.append(handler)
        return StopEvent(result=await handler)


async def test_step_runs_a_child_workflow_and_returns_its_result() -> None:
    wf = ParentWorkflow(SquareChild())
    handler = wf.run(n=7)
    assert await asyncio.wait_for(handler, 1) == {"child": 49, "parent_saw": 7}
    assert await handler.ctx.store.get("child_result") == 49
    (child,) = wf.child_handlers
    assert child.status is RunStatus.SUCCEEDED
    # The child has its own context and store.
    assert child.ctx is not handler.ctx
    assert await child.ctx.store.get("input") == 7
    assert await handler.ctx.store.get("input", default=None) is None


async def test_many_parents_share_one_child_instance() -> None:
    wf = ParentWorkflow(SquareChild())
    results = await asyncio.wait_for(asyncio.gather(*(wf.run(n=i) for i in range(50))), 2)
    assert [r["child"] for r in results] == [i * i for i in range(50)]


async def test_child_failure_fails_the_parent_step() -> None:
    wf = ParentWorkflow(FailingChild())
    err = await asyncio.wait_for(outcome(wf.run()), 1)
    assert isinstance(err, StepFailedError)
    assert err.step == "delegate"
    child_err = err.__cause__
    assert isinstance(child_err, StepFailedError)
    assert child_err.step == "child_explodes"
    assert isinstance(child_err.__cause__, ValueError)


async def test_cancelling_the_parent_cancels_the_child() -> None:
    before = other_tasks()
    child = SleepingChild()
    wf = ParentWorkflow(child)
    handler = wf.run()
    await wait_until(lambda: child.started == 1)
    (child_handler,) = wf.child_handlers
    assert child_handler.status is RunStatus.RUNNING

    began = time.perf_counter()
    handler.cancel_run()
    err = await asyncio.wait_for(outcome(handler), 1)
    assert time.perf_counter() - began < 0.2
    assert isinstance(err, WorkflowCancelledError)
    assert handler.status is RunStatus.CANCELLED
    assert child_handler.status is RunStatus.CANCELLED
    assert child_handler.done()
    assert isinstance(await outcome(child_handler), WorkflowCancelledError | asyncio.CancelledError)
    assert other_tasks() <= before


async def test_parent_timeout_cancels_the_child() -> None:
    before = other_tasks()
    wf = ParentWorkflow(SleepingChild(), timeout=0.05)
    handler = wf.run()
    await asyncio.wait_for(outcome(handler), 1)
    assert handler.status is RunStatus.TIMED_OUT
    (child_handler,) = wf.child_handlers
    assert child_handler.status is RunStatus.CANCELLED
    assert other_tasks() <= before


async def test_cancelling_a_parent_whose_step_retries_cancels_promptly() -> None:
    child = SleepingChild()
    wf = RetryingParentWorkflow(child)
    handler = wf.run()
    await wait_until(lambda: child.started == 1)
    handler.cancel_run()
    try:
        done, _ = await asyncio.wait({handler}, timeout=0.5)
        assert handler in done, "the cancelled parent run did not finish"
        assert child.started == 1, f"the child workflow was started {child.started} times"
    finally:
        # Each retry starts another child: keep cancelling them until the parent ends.
        for _ in range(20):
            for child_handler in wf.child_handlers:
                child_handler.cancel_run()
            if handler.done():
                break
            await asyncio.wait({handler}, timeout=0.05)
        await asyncio.gather(handler, *wf.child_handlers, return_exceptions=True)
