"""Every error status and every unsuccessful ending arrives as its typed exception."""

from __future__ import annotations

import grpc
import pytest
from workflow_client import (
    AlreadyExistsError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    RunCancelledError,
    RunError,
    RunFailedError,
    RunTimedOutError,
    WorkflowClient,
    WorkflowServiceError,
)

from service.server import WorkflowServer

from .helpers import all_workflows


async def test_unknown_workflow_is_not_found(client: WorkflowClient) -> None:
    with pytest.raises(NotFoundError) as run_error:
        await client.run("no-such-workflow")
    assert run_error.value.code == grpc.StatusCode.NOT_FOUND
    assert "no-such-workflow" in run_error.value.details
    with pytest.raises(NotFoundError):
        await client.start("no-such-workflow")
    with pytest.raises(NotFoundError):
        [e async for e in client.stream("no-such-workflow").events()]


async def test_unknown_run_is_not_found(client: WorkflowClient) -> None:
    with pytest.raises(NotFoundError):
        await client.get_run("no-such-run")
    with pytest.raises(NotFoundError):
        await client.cancel("no-such-run")
    with pytest.raises(NotFoundError):
        await client.send_event("no-such-run", "HumanResponseEvent", response="yes")
    with pytest.raises(NotFoundError):
        [e async for e in client.handle("no-such-run").events()]


@pytest.mark.parametrize("count", [-1, "x"])
async def test_bad_input_is_invalid_argument_naming_the_field(
    client: WorkflowClient, count: object
) -> None:
    with pytest.raises(InvalidArgumentError) as run_error:
        await client.run("ticker", count=count, interval_ms=1)
    assert "count" in run_error.value.details
    assert isinstance(run_error.value, WorkflowServiceError)
    with pytest.raises(InvalidArgumentError) as start_error:
        await client.start("ticker", count=count)
    assert "count" in start_error.value.details


async def test_missing_required_field_is_invalid_argument(client: WorkflowClient) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        await client.run("echo")
    assert "message" in error.value.details


async def test_non_positive_timeout_is_invalid_argument(client: WorkflowClient) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        await client.run("echo", timeout=-1, message="hi")
    assert "timeout" in error.value.details


async def test_same_run_id_with_other_input_already_exists(client: WorkflowClient) -> None:
    first = await client.start("echo", run_id="dup", message="a")
    again = await client.start("echo", run_id="dup", message="a")
    assert again.run_id == first.run_id == "dup"
    with pytest.raises(AlreadyExistsError) as error:
        await client.start("echo", run_id="dup", message="b")
    assert "dup" in error.value.details
    with pytest.raises(AlreadyExistsError):
        await client.run("ticker", run_id="dup", count=1)
    assert await first.result() == "a"


async def test_cancel_of_an_ended_run_is_failed_precondition(client: WorkflowClient) -> None:
    await client.run("echo", run_id="ended", message="hi")
    with pytest.raises(FailedPreconditionError):
        await client.cancel("ended")
    with pytest.raises(FailedPreconditionError):
        await client.handle("ended").cancel()


async def test_send_event_to_an_ended_run_is_failed_precondition(
    client: WorkflowClient,
) -> None:
    await client.run("echo", run_id="ended", message="hi")
    with pytest.raises(FailedPreconditionError):
        await client.send_event("ended", "HumanResponseEvent", response="yes")


async def test_send_event_of_unknown_type_is_invalid_argument(client: WorkflowClient) -> None:
    handle = await client.start("approval", question="ship it?")
    try:
        with pytest.raises(InvalidArgumentError) as error:
            await handle.send_event("NoSuchEvent", response="yes")
        assert "NoSuchEvent" in error.value.details
        assert "HumanResponseEvent" in error.value.details  # says what it accepts
        with pytest.raises(InvalidArgumentError):
            await handle.send_event("HumanResponseEvent", wrong_field=1)
    finally:
        await handle.cancel()


async def test_step_that_raises_is_run_failed_with_its_step(client: WorkflowClient) -> None:
    with pytest.raises(RunFailedError) as error:
        await client.run("boom", message="kaput")
    run = error.value.run
    assert isinstance(error.value, RunError)
    assert run.status == "FAILED"
    assert run.error is not None
    assert run.error.step == "explode"
    assert "ValueError" in run.error.message and "kaput" in run.error.message
    assert run.result is None


async def test_run_failed_from_handle_result(client: WorkflowClient) -> None:
    handle = await client.start("boom")
    with pytest.raises(RunFailedError) as error:
        await handle.result()
    assert error.value.run.error is not None
    assert error.value.run.error.step == "explode"


async def test_run_past_its_timeout_is_run_timed_out(client: WorkflowClient) -> None:
    with pytest.raises(RunTimedOutError) as error:
        await client.run("slow", timeout=0.05, seconds=5)
    assert error.value.run.status == "TIMED_OUT"
    handle = await client.start("slow", timeout=0.05, seconds=5)
    with pytest.raises(RunTimedOutError):
        await handle.result()


async def test_cancelled_run_is_run_cancelled(client: WorkflowClient) -> None:
    handle = await client.start("slow", seconds=30)
    cancelled = await handle.cancel()
    assert cancelled.status == "CANCELLED"
    with pytest.raises(RunCancelledError) as error:
        await handle.result()
    assert error.value.run.status == "CANCELLED"
    assert (await handle.get()).status == "CANCELLED"
    with pytest.raises(FailedPreconditionError):
        await handle.cancel()


# ---- the status details the service sends with each error ------------------------------------


async def test_errors_carry_reason_domain_and_metadata(client: WorkflowClient) -> None:
    with pytest.raises(NotFoundError) as missing:
        await client.get_run("no-such-run")
    assert (missing.value.reason, missing.value.domain) == ("RUN_NOT_FOUND", "workflow.v1")
    assert missing.value.metadata == {"run_id": "no-such-run"}
    assert missing.value.field_violations == []
    assert missing.value.retry_after is None

    with pytest.raises(NotFoundError) as unknown:
        await client.run("no-such-workflow")
    assert unknown.value.reason == "WORKFLOW_NOT_FOUND"
    assert unknown.value.metadata["workflow"] == "no-such-workflow"


async def test_bad_input_lists_each_bad_field(client: WorkflowClient) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        await client.run("ticker", count=-1, interval_ms="soon")
    assert error.value.reason == "INPUT_INVALID"
    fields = sorted(v.field for v in error.value.field_violations)
    assert fields == ["input.count", "input.interval_ms"]
    for violation in error.value.field_violations:
        assert isinstance(violation, FieldViolation) and violation.description

    handle = await client.start("approval", question="ship it?")
    try:
        with pytest.raises(InvalidArgumentError) as event_error:
            await handle.send_event("HumanResponseEvent", response=["not", "text"])
        assert event_error.value.reason == "EVENT_INVALID"
        assert [v.field for v in event_error.value.field_violations] == ["data.response"]
        assert event_error.value.metadata["run_id"] == handle.run_id
    finally:
        await handle.cancel()


async def test_too_many_runs_says_when_to_retry() -> None:
    server = WorkflowServer(all_workflows(), max_concurrent_runs=1)
    port = await server.start("127.0.0.1", 0)
    try:
        async with WorkflowClient(f"127.0.0.1:{port}") as client:
            await client.start("slow", seconds=5)
            with pytest.raises(ResourceExhaustedError) as error:
                await client.start("slow", seconds=5)
            assert error.value.reason == "TOO_MANY_RUNS"
            assert error.value.retry_after is not None and 0 < error.value.retry_after <= 60
    finally:
        await server.stop(0)
