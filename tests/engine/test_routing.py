"""Spec 2 (routing): events go to steps by the annotations of their event parameter and
return type; unions and None are allowed and the context parameter is optional."""

from engine import Context, Event, StartEvent, StopEvent, Workflow, step


class LeftEvent(Event):
    value: int


class RightEvent(Event):
    value: int


class MergedEvent(Event):
    path: str
    value: int


class ItemEvent(Event):
    n: int


class FoundEvent(Event):
    n: int


class BaseNote(Event):
    text: str


class LoudNote(BaseNote):
    pass


class BranchingWorkflow(Workflow):
    """Start → Left | Right (union return) → merge (union param) → Stop."""

    @step
    async def branch(self, ev: StartEvent) -> LeftEvent | RightEvent:
        if ev.value < 0:
            return LeftEvent(value=ev.value)
        return RightEvent(value=ev.value)

    @step
    async def merge(self, ev: LeftEvent | RightEvent) -> MergedEvent:
        return MergedEvent(path=type(ev).__name__, value=ev.value)

    @step
    async def finish(self, ctx: Context, ev: MergedEvent) -> StopEvent:
        return StopEvent(result=(ev.path, ev.value))


class NoContextWorkflow(Workflow):
    """Steps without a ctx parameter, and one with the context after the event."""

    @step
    async def first(self, ev: StartEvent) -> LeftEvent:
        return LeftEvent(value=ev.n + 1)

    @step
    async def second(self, ev: LeftEvent, ctx: Context) -> StopEvent:
        await ctx.store.set("seen", ev.value)
        return StopEvent(result=ev.value * 10)


class OptionalReturnWorkflow(Workflow):
    """A step that returns None for most events; only the matching one moves on."""

    @step
    async def fan_out(self, ctx: Context, ev: StartEvent) -> ItemEvent | None:
        for n in range(6):
            ctx.send_event(ItemEvent(n=n))
        return None

    @step
    async def check(self, ctx: Context, ev: ItemEvent) -> FoundEvent | None:
        async with ctx.store.edit() as state:
            state["checked"] = state.get("checked", 0) + 1
        if ev.n == 4:
            return FoundEvent(n=ev.n)
        return None

    @step
    async def found(self, ctx: Context, ev: FoundEvent) -> StopEvent:
        return StopEvent(result=ev.n)


class SubclassRoutingWorkflow(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> LoudNote:
        return LoudNote(text=ev.text)

    @step
    async def any_note(self, ev: BaseNote) -> StopEvent:
        return StopEvent(result=(type(ev).__name__, ev.text))


class StepNamedStartWorkflow(Workflow):
    """The step name used by llama-index-workflows' own docstring examples."""

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=ev.x + 1)


class FreeStepWorkflow(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> LeftEvent:
        return LeftEvent(value=ev.v)


@step(workflow=FreeStepWorkflow)
async def free_finish(ctx: Context, ev: LeftEvent) -> StopEvent:
    return StopEvent(result=ev.value + 100)


async def test_union_return_routes_to_the_returned_type() -> None:
    wf = BranchingWorkflow()
    assert await wf.run(value=-3) == ("LeftEvent", -3)
    assert await wf.run(value=7) == ("RightEvent", 7)


def test_graph_reads_unions_from_annotations() -> None:
    steps = BranchingWorkflow().steps
    assert steps["merge"].accepts == (LeftEvent, RightEvent)
    assert steps["branch"].returns == (LeftEvent, RightEvent)
    assert steps["finish"].accepts == (MergedEvent,)
    assert steps["finish"].returns == (StopEvent,)


async def test_steps_without_context_and_with_context_last() -> None:
    handler = NoContextWorkflow().run(n=4)
    assert await handler == 50
    assert await handler.ctx.store.get("seen") == 5


async def test_step_returning_none_sends_nothing_on() -> None:
    handler = OptionalReturnWorkflow().run()
    assert await handler == 4
    # Items processed before the FoundEvent ended the run were all checked.
    assert await handler.ctx.store.get("checked") >= 5


def test_optional_return_annotation_is_read_as_no_event() -> None:
    steps = OptionalReturnWorkflow().steps
    assert steps["check"].returns == (FoundEvent,)
    assert steps["fan_out"].returns == (ItemEvent,)


async def test_event_subclass_goes_to_step_accepting_its_base() -> None:
    assert await SubclassRoutingWorkflow().run(text="hey") == ("LoudNote", "hey")


async def test_step_may_be_named_start() -> None:
    assert await StepNamedStartWorkflow().run(x=1) == 2


async def test_free_function_step_attached_with_workflow_argument() -> None:
    wf = FreeStepWorkflow()
    assert set(wf.steps) == {"begin", "free_finish"}
    assert await wf.run(v=1) == 101
