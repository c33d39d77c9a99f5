"""Spec 2 (validation): an invalid step graph is rejected when the workflow is built."""

import pytest

from engine import (
    Context,
    Event,
    HumanResponseEvent,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowValidationError,
    step,
)


class MiddleEvent(Event):
    pass


class OrphanProducedEvent(Event):
    pass


class NeverProducedEvent(Event):
    pass


class ExternalPing(Event):
    value: int = 0


# Invalid workflows are defined at module level: the graph is only checked at `Workflow()`.


class NoStartWorkflow(Workflow):
    @step
    async def middle_only(self, ev: MiddleEvent) -> StopEvent:
        return StopEvent()


class NoStopWorkflow(Workflow):
    @step
    async def begin_step(self, ev: StartEvent) -> MiddleEvent:
        return MiddleEvent()

    @step
    async def loop_step(self, ev: MiddleEvent) -> MiddleEvent | None:
        return None


class ProducedNeverConsumedWorkflow(Workflow):
    @step
    async def producer_step(self, ev: StartEvent) -> OrphanProducedEvent | StopEvent:
        return StopEvent()


class ConsumedNeverProducedWorkflow(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> StopEvent:
        return StopEvent()

    @step
    async def hungry_step(self, ev: NeverProducedEvent) -> StopEvent:
        return StopEvent()


class UnannotatedEventWorkflow(Workflow):
    @step
    async def unannotated_step(self, ctx: Context, ev) -> StopEvent:  # type: ignore[no-untyped-def]
        return StopEvent()


class NoEventParameterWorkflow(Workflow):
    @step
    async def ctx_only_step(self, ctx: Context) -> StopEvent:
        return StopEvent()


class SyncStepWorkflow(Workflow):
    @step
    def sync_step(self, ev: StartEvent) -> StopEvent:
        return StopEvent()


class NoReturnAnnotationWorkflow(Workflow):
    @step
    async def unreturning_step(self, ev: StartEvent):  # type: ignore[no-untyped-def]
        return StopEvent()


class ExternalEventWorkflow(Workflow):
    external_events = (ExternalPing,)

    @step
    async def begin(self, ev: StartEvent) -> StopEvent:
        return StopEvent()

    @step
    async def on_ping(self, ev: ExternalPing) -> StopEvent:
        return StopEvent()


class HumanResponseWorkflow(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> StopEvent:
        return StopEvent()

    @step
    async def on_human(self, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent()


def validation_message(cls: type[Workflow]) -> str:
    with pytest.raises(WorkflowValidationError) as info:
        cls()
    return str(info.value)


def test_no_step_accepts_start_event() -> None:
    msg = validation_message(NoStartWorkflow)
    assert "StartEvent" in msg
    assert "NoStartWorkflow" in msg


def test_no_step_returns_stop_event() -> None:
    msg = validation_message(NoStopWorkflow)
    assert "StopEvent" in msg
    assert "NoStopWorkflow" in msg


def test_event_produced_but_never_consumed() -> None:
    msg = validation_message(ProducedNeverConsumedWorkflow)
    assert "producer_step" in msg
    assert "OrphanProducedEvent" in msg


def test_event_consumed_but_never_produced() -> None:
    msg = validation_message(ConsumedNeverProducedWorkflow)
    assert "hungry_step" in msg
    assert "NeverProducedEvent" in msg


def test_step_without_event_annotation() -> None:
    msg = validation_message(UnannotatedEventWorkflow)
    assert "unannotated_step" in msg
    assert "'ev'" in msg


def test_step_without_event_parameter() -> None:
    msg = validation_message(NoEventParameterWorkflow)
    assert "ctx_only_step" in msg
    assert "Event" in msg


def test_step_that_is_not_async() -> None:
    msg = validation_message(SyncStepWorkflow)
    assert "sync_step" in msg
    assert "async" in msg


def test_step_without_return_annotation() -> None:
    msg = validation_message(NoReturnAnnotationWorkflow)
    assert "unreturning_step" in msg


def test_validation_error_is_raised_on_every_construction() -> None:
    # A failed check is not cached as a valid graph.
    for _ in range(2):
        with pytest.raises(WorkflowValidationError):
            NoStartWorkflow()


def test_disable_validation_skips_the_checks() -> None:
    wf = ConsumedNeverProducedWorkflow(disable_validation=True)
    assert set(wf.steps) == {"begin", "hungry_step"}


def test_external_and_human_response_events_need_no_producer() -> None:
    assert ExternalPing in ExternalEventWorkflow().external_event_types()
    assert HumanResponseEvent in HumanResponseWorkflow().external_event_types()


@pytest.mark.parametrize(
    "kwargs",
    [{"num_workers": 0}, {"num_workers": 1.5}, {"timeout": 0}, {"timeout": -1}],
)
def test_step_decorator_rejects_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(WorkflowValidationError):
        step(**kwargs)  # type: ignore[call-overload]


def test_workflow_rejects_non_positive_timeout() -> None:
    with pytest.raises(ValueError):
        HumanResponseWorkflow(timeout=0)


def test_a_step_may_not_hide_a_workflow_method() -> None:
    class Hiding(Workflow):
        @step
        async def steps(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowValidationError) as info:
        Hiding()
    assert "steps" in str(info.value)
