"""GetRun, CancelRun, SendEvent (human in the loop) and idempotent run ids."""

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from service import wire
from service._pb import workflow_pb2 as pb
from service.runs import _fingerprint

from .conftest import Served, req, struct


async def status_of(served: Served, run_id: str) -> int:
    return (await served.stub.GetRun(pb.GetRunRequest(run_id=run_id))).run.status


async def wait_status(served: Served, run_id: str, status: int) -> None:
    for _ in range(200):
        if await status_of(served, run_id) == status:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} never reached {pb.RunStatus.Name(status)}")


async def test_get_unknown_run_is_not_found(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.GetRun(pb.GetRunRequest(run_id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cancel_ends_the_run_and_its_streams(served: Served) -> None:
    run = await served.start("ticker", count=1000, interval_ms=20)
    stream = asyncio.ensure_future(served.events(run.run_id))
    await asyncio.sleep(0.1)
    cancelled = (await served.stub.CancelRun(pb.CancelRunRequest(run_id=run.run_id))).run
    assert cancelled.status == pb.RUN_STATUS_CANCELLED
    events = await asyncio.wait_for(stream, 2)
    assert events[-1].kind == pb.EVENT_KIND_RUN_CANCELLED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.CancelRun(pb.CancelRunRequest(run_id=run.run_id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_cancel_unknown_run_is_not_found(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.CancelRun(pb.CancelRunRequest(run_id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_human_in_the_loop_through_send_event(served: Served) -> None:
    run = await served.start("approval", question="Ship it?")
    stream = served.stub.StreamEvents(pb.StreamEventsRequest(run_id=run.run_id))
    seen = []
    async for e in stream:
        seen.append(e)
        if e.kind == pb.EVENT_KIND_INPUT_REQUIRED:
            assert e.type == "InputRequiredEvent"
            assert e.data.fields["question"].string_value == "Ship it?"
            await wait_status(served, run.run_id, pb.RUN_STATUS_WAITING_FOR_INPUT)
            await served.stub.SendEvent(
                pb.SendEventRequest(
                    run_id=run.run_id, type="HumanResponseEvent", data=struct(response="yes")
                )
            )
    assert seen[-1].kind == pb.EVENT_KIND_RUN_SUCCEEDED
    final = (await served.stub.GetRun(pb.GetRunRequest(run_id=run.run_id))).run
    assert final.result.struct_value.fields["approved"].bool_value is True
    assert final.result.struct_value.fields["response"].string_value == "yes"


async def test_an_answer_other_than_yes_is_not_approval(served: Served) -> None:
    run = await served.start("approval", question="Ship it?")
    await wait_status(served, run.run_id, pb.RUN_STATUS_WAITING_FOR_INPUT)
    await served.stub.SendEvent(
        pb.SendEventRequest(
            run_id=run.run_id, type="HumanResponseEvent", data=struct(response="no")
        )
    )
    events = await served.events(run.run_id)
    assert events[-1].data.fields["result"].struct_value.fields["approved"].bool_value is False


async def test_event_sent_before_the_wait_is_kept_for_it(served: Served) -> None:
    run = await served.start("late_wait", seconds=0.2)
    resp = await served.stub.SendEvent(
        pb.SendEventRequest(run_id=run.run_id, type="Answer", data=struct(response="early"))
    )
    assert resp.run.status == pb.RUN_STATUS_RUNNING
    events = await served.events(run.run_id)
    assert events[-1].kind == pb.EVENT_KIND_RUN_SUCCEEDED
    assert events[-1].data.fields["result"].string_value == "early"


@pytest.mark.parametrize(
    ("type_name", "data", "needle"),
    [
        ("NoSuchEvent", {"response": "yes"}, "HumanResponseEvent"),
        ("HumanResponseEvent", {}, "response"),
        ("HumanResponseEvent", {"response": 5}, "response"),
        ("", {"response": "yes"}, "type"),
    ],
)
async def test_send_event_bad_type_or_data_is_invalid_argument(
    served: Served, type_name: str, data: dict, needle: str
) -> None:
    run = await served.start("approval", question="?")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.SendEvent(
            pb.SendEventRequest(run_id=run.run_id, type=type_name, data=struct(**data))
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in info.value.details()
    assert await status_of(served, run.run_id) != pb.RUN_STATUS_FAILED


async def test_send_event_to_an_ended_or_unknown_run(served: Served) -> None:
    resp = await served.stub.RunWorkflow(req("echo", _wait=True, message="x"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.SendEvent(
            pb.SendEventRequest(
                run_id=resp.run.run_id, type="HumanResponseEvent", data=struct(response="y")
            )
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.SendEvent(pb.SendEventRequest(run_id="nope", type="X"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_same_run_id_and_input_returns_the_same_run(served: Served) -> None:
    first = await served.start("sleep", seconds=0.05, _run_id="idem-1")
    again = await served.stub.RunWorkflow(
        pb.RunWorkflowRequest(
            workflow="sleep",
            input=struct(seconds=0.05),
            run_id="idem-1",
            wait=True,
            labels={"other": "labels"},
        )
    )
    assert again.run.run_id == first.run_id == "idem-1"
    assert again.run.status == pb.RUN_STATUS_SUCCEEDED
    started = [e for e in await served.events("idem-1") if e.kind == pb.EVENT_KIND_RUN_STARTED]
    assert len(started) == 1


async def test_same_run_id_with_other_input_or_workflow_already_exists(served: Served) -> None:
    await served.start("echo", message="a", _run_id="idem-2")
    for other in (req("echo", message="b", _run_id="idem-2"), req("sleep", _run_id="idem-2")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await served.stub.RunWorkflow(other)
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS


def _in_order(data: dict[str, Any]) -> struct_pb2.Struct:
    """``data`` as a Struct parsed from map entries written in the dict's order."""
    return pb.WorkflowEvent.FromString(wire.data_field(data)).data


def test_the_same_input_in_any_key_order_is_the_same_start() -> None:
    """Map entries may come in any order on the wire (nested ones too); the idempotency
    fingerprint does not depend on it, and differs for another input or workflow."""
    forward = {"count": 2, "interval_ms": 0, "nested": {"x": 1, "y": 2}}
    backward = {"nested": {"y": 2, "x": 1}, "interval_ms": 0, "count": 2}
    assert wire.data_field(forward) != wire.data_field(backward)
    one, two = (
        pb.RunWorkflowRequest(workflow="ticker", input=_in_order(d)) for d in (forward, backward)
    )
    assert one.input == two.input

    def fingerprint(req: pb.RunWorkflowRequest) -> str:
        return _fingerprint(req.workflow, req.input)[0]

    assert fingerprint(one) == fingerprint(two)
    other = pb.RunWorkflowRequest(workflow="ticker", input=struct(count=3, interval_ms=0))
    assert fingerprint(other) != fingerprint(one)
    elsewhere = pb.RunWorkflowRequest(workflow="echo", input=one.input)
    assert fingerprint(elsewhere) != fingerprint(one)


async def test_concurrent_starts_with_one_run_id_make_one_run(served: Served) -> None:
    runs = await asyncio.gather(
        *(served.start("sleep", seconds=0.05, _run_id="idem-3") for _ in range(20))
    )
    assert {r.run_id for r in runs} == {"idem-3"}
    listed = await served.stub.ListRuns(pb.ListRunsRequest(workflow="sleep"))
    assert [r.run_id for r in listed.runs].count("idem-3") == 1
