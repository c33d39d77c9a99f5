"""RunWorkflow: results, input validation, timeouts, admission, failures."""

import asyncio

import grpc
import pytest
from google.protobuf import duration_pb2

from engine import Context, WorkflowHandler
from engine.run import Run, Work
from service._pb import workflow_pb2 as pb
from service.active_run import ActiveRun

from ..cycles import cycle_garbage
from .conftest import Served, req, serve, struct


async def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code()


async def test_echo_waits_for_its_result(served: Served) -> None:
    resp = await served.stub.RunWorkflow(req("echo", _wait=True, message="hello"))
    assert resp.run.status == pb.RUN_STATUS_SUCCEEDED
    assert resp.run.result.string_value == "hello"
    assert resp.run.last_sequence >= 4  # started, step started/finished, succeeded
    assert resp.run.HasField("ended_at")


async def test_without_wait_returns_at_once(served: Served) -> None:
    run = await served.start("sleep", seconds=0.3)
    assert run.status in (pb.RUN_STATUS_PENDING, pb.RUN_STATUS_RUNNING)
    assert run.run_id
    done = await served.stub.RunWorkflow(req("sleep", _wait=True, seconds=0.01))
    assert done.run.result.number_value == pytest.approx(0.01)


async def test_ticker_result_is_count_and_whole_doubles_are_integers(served: Served) -> None:
    resp = await served.stub.RunWorkflow(req("ticker", _wait=True, count=3.0, interval_ms=0))
    assert resp.run.result.number_value == 3
    assert resp.run.input.fields["count"].number_value == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("count", 2.5), ("count", -1), ("count", 100_001), ("interval_ms", 60_001), ("count", "x")],
)
async def test_ticker_rejects_bad_numbers_naming_the_field(
    served: Served, field: str, value: object
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.RunWorkflow(req("ticker", **{field: value}))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in info.value.details()


async def test_missing_required_field_is_invalid_argument(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.RunWorkflow(req("echo"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "message" in info.value.details()


async def test_unknown_workflow_is_not_found_and_names_the_hosted_ones(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.RunWorkflow(req("nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "echo" in info.value.details()
    assert await code_of(served.stub.RunWorkflow(req(""))) == grpc.StatusCode.INVALID_ARGUMENT


async def test_negative_or_zero_timeout_is_invalid(served: Served) -> None:
    for seconds in (-1, 0):
        r = req("echo", message="x")
        r.timeout.CopyFrom(duration_pb2.Duration(seconds=seconds))
        assert await code_of(served.stub.RunWorkflow(r)) == grpc.StatusCode.INVALID_ARGUMENT


async def test_bad_run_id_is_invalid(served: Served) -> None:
    call = served.stub.RunWorkflow(req("echo", _run_id="has space", message="x"))
    assert await code_of(call) == grpc.StatusCode.INVALID_ARGUMENT


async def test_run_timeout_ends_timed_out(served: Served) -> None:
    r = req("sleep", _wait=True, seconds=5)
    r.timeout.CopyFrom(duration_pb2.Duration(nanos=50_000_000))
    resp = await served.stub.RunWorkflow(r)
    assert resp.run.status == pb.RUN_STATUS_TIMED_OUT
    assert resp.run.error.type == "WorkflowTimeoutError"
    events = await served.events(resp.run.run_id)
    assert events[-1].kind == pb.EVENT_KIND_RUN_TIMED_OUT


async def test_server_default_timeout_applies_when_unset(store_url: str) -> None:
    server, port = await serve(store_url, default_timeout=0.05)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            served = Served(server, port, ch)
            resp = await served.stub.RunWorkflow(req("sleep", _wait=True, seconds=5))
            assert resp.run.status == pb.RUN_STATUS_TIMED_OUT
    finally:
        await server.stop(0)


async def test_call_deadline_is_deadline_exceeded_and_the_run_goes_on(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.RunWorkflow(
            req("sleep", _wait=True, _run_id="deadline-1", seconds=0.3), timeout=0.05
        )
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    run = (await served.stub.GetRun(pb.GetRunRequest(run_id="deadline-1"))).run
    assert run.status == pb.RUN_STATUS_RUNNING
    # Another caller waiting on the same run gets its end; the one that left is forgotten.
    again = req("sleep", _wait=True, _run_id="deadline-1", seconds=0.3)
    assert (await served.stub.RunWorkflow(again)).run.status == pb.RUN_STATUS_SUCCEEDED
    events = await served.events("deadline-1")
    assert events[-1].kind == pb.EVENT_KIND_RUN_SUCCEEDED


async def test_beyond_max_concurrent_runs_is_resource_exhausted(store_url: str) -> None:
    server, port = await serve(store_url, max_concurrent_runs=2)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            served = Served(server, port, ch)
            await served.start("sleep", seconds=0.3)
            await served.start("sleep", seconds=0.3)
            call = served.stub.RunWorkflow(req("echo", message="x"))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "2" in info.value.details()
            await asyncio.sleep(0.4)  # both ended: room again
            resp = await served.stub.RunWorkflow(req("echo", _wait=True, message="x"))
            assert resp.run.status == pb.RUN_STATUS_SUCCEEDED
    finally:
        await server.stop(0)


async def test_failing_step_fails_the_run_naming_the_step(served: Served) -> None:
    resp = await served.stub.RunWorkflow(req("failing", _wait=True, message="kaput"))
    assert resp.run.status == pb.RUN_STATUS_FAILED
    assert resp.run.error.step == "explode"
    assert "kaput" in resp.run.error.message
    events = await served.events(resp.run.run_id)
    assert events[-1].kind == pb.EVENT_KIND_RUN_FAILED
    assert events[-1].data.fields["step"].string_value == "explode"


async def test_flaky_succeeds_through_its_retry_policy(served: Served) -> None:
    resp = await served.stub.RunWorkflow(req("flaky", _wait=True, failures=2))
    assert resp.run.status == pb.RUN_STATUS_SUCCEEDED
    assert resp.run.result.struct_value.fields["attempts"].number_value == 3
    finished = [
        e for e in await served.events(resp.run.run_id) if e.kind == pb.EVENT_KIND_STEP_FINISHED
    ]
    assert [e.data.fields["attempt"].number_value for e in finished] == [1, 2, 3]
    assert "FlakyError" in finished[0].data.fields["error"].string_value


async def test_research_returns_a_summary_of_every_query(served: Served) -> None:
    resp = await served.stub.RunWorkflow(req("research", _wait=True, topic="tides"))
    result = resp.run.result.struct_value
    assert result.fields["topic"].string_value == "tides"
    assert result.fields["summary"].string_value.count("notes on tides") == 4


async def test_bad_input_leaves_the_server_serving(served: Served) -> None:
    for bad in (req("ticker", count="many"), req("nope"), req("echo")):
        with pytest.raises(grpc.aio.AioRpcError):
            await served.stub.RunWorkflow(bad)
    resp = await served.stub.RunWorkflow(
        pb.RunWorkflowRequest(workflow="echo", input=struct(message="ok"), wait=True)
    )
    assert resp.run.result.string_value == "ok"


async def test_oversized_input_is_refused_naming_the_limit(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.RunWorkflow(req("echo", message="x" * (2 * 1024 * 1024)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input" in info.value.details()
    assert "max-payload-bytes" in info.value.details()


async def test_ended_runs_are_freed_without_the_cycle_collector(served: Served) -> None:
    """Runs answered by RunWorkflow(wait) or streamed to their end leave nothing of theirs
    (ActiveRun, the engine's run, context and handler) in reference cycles: a busy server
    frees each run when it ends instead of at the cyclic collector's next pass."""
    await served.stub.RunWorkflow(req("echo", _wait=True, message="warm-up"))
    with cycle_garbage() as garbage:
        for i in range(5):
            resp = await served.stub.RunWorkflow(req("echo", _wait=True, message=f"m{i}"))
            assert resp.run.result.string_value == f"m{i}"
        stream = served.stub.StreamEvents(
            pb.StreamEventsRequest(start=req("ticker", count=3, interval_ms=0))
        )
        assert len([e async for e in stream]) == 3 + 4  # ticks, run and step events
    ours = (ActiveRun, Run, Work, Context, WorkflowHandler)
    assert [type(o).__name__ for o in garbage if isinstance(o, ours)] == []
