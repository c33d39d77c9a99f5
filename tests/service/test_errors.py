"""Every error carries a google.rpc.Status: ErrorInfo reason and metadata, BadRequest field
violations for bad input, RetryInfo when retrying later helps."""

import asyncio
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from service._pb import workflow_pb2 as pb
from service.errors import ServiceError, rich_status

from .conftest import Details, Served, details, req, serve, struct


async def failure(call: Awaitable[Any]) -> tuple[grpc.StatusCode, Details]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    found = details(info.value)
    assert found.domain == "workflow.v1"
    return info.value.code(), found


async def test_unknown_workflow(served: Served) -> None:
    code, d = await failure(served.stub.RunWorkflow(req("nope")))
    assert code == grpc.StatusCode.NOT_FOUND
    assert d.reason == "WORKFLOW_NOT_FOUND"
    assert d.metadata["workflow"] == "nope"


async def test_unknown_run(served: Served) -> None:
    code, d = await failure(served.stub.GetRun(pb.GetRunRequest(run_id="nope")))
    assert (code, d.reason) == (grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND")
    assert d.metadata["run_id"] == "nope"


async def test_missing_fields_name_the_field(served: Served) -> None:
    _, d = await failure(served.stub.RunWorkflow(pb.RunWorkflowRequest()))
    assert d.reason == "REQUEST_INVALID"
    assert [f for f, _ in d.violations] == ["workflow"]
    _, d = await failure(served.stub.GetRun(pb.GetRunRequest()))
    assert [f for f, _ in d.violations] == ["run_id"]
    _, d = await failure(served.stub.SendEvent(pb.SendEventRequest(run_id="x")))
    assert [f for f, _ in d.violations] == ["type"]


async def test_multi_field_bad_input_lists_every_field(served: Served) -> None:
    bad = req("ticker", count=100_001, interval_ms="soon")
    code, d = await failure(served.stub.RunWorkflow(bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert d.reason == "INPUT_INVALID"
    assert d.metadata["workflow"] == "ticker"
    assert d.metadata["event_type"] == "TickerInput"
    assert sorted(f for f, _ in d.violations) == ["input.count", "input.interval_ms"]
    assert all(description for _, description in d.violations)


async def test_missing_required_input_field(served: Served) -> None:
    _, d = await failure(served.stub.RunWorkflow(req("echo")))
    assert d.reason == "INPUT_INVALID"
    assert [f for f, _ in d.violations] == ["input.message"]


async def test_negative_after_sequence_and_timeout(served: Served) -> None:
    stream = served.stub.StreamEvents(pb.StreamEventsRequest(run_id="x", after_sequence=-1))
    code, d = await failure(stream.read())
    assert (code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_INVALID")
    assert [f for f, _ in d.violations] == ["after_sequence"]
    request = req("echo", message="hi")
    request.timeout.CopyFrom(duration_pb2.Duration(seconds=-1))
    _, d = await failure(served.stub.RunWorkflow(request))
    assert [f for f, _ in d.violations] == ["timeout"]


async def test_payload_too_large(store_url: str) -> None:
    server, port = await serve(store_url, max_payload_bytes=100)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            served = Served(server, port, channel)
            code, d = await failure(served.stub.RunWorkflow(req("echo", message="x" * 200)))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert d.reason == "PAYLOAD_TOO_LARGE"
            assert [f for f, _ in d.violations] == ["input"]
            assert d.metadata["limit_bytes"] == "100"
            assert int(d.metadata["size_bytes"]) > 100
            run = await served.start("approval", question="Ship?")
            send = pb.SendEventRequest(
                run_id=run.run_id, type="HumanResponseEvent", data=struct(response="y" * 200)
            )
            _, d = await failure(served.stub.SendEvent(send))
            assert d.reason == "PAYLOAD_TOO_LARGE"
            assert [f for f, _ in d.violations] == ["data"]
    finally:
        await server.stop(0)


async def test_send_event_errors(served: Served) -> None:
    run = await served.start("approval", question="Ship?")
    unknown = pb.SendEventRequest(run_id=run.run_id, type="Nope", data=struct())
    code, d = await failure(served.stub.SendEvent(unknown))
    assert (code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "EVENT_TYPE_UNKNOWN")
    assert d.metadata["run_id"] == run.run_id
    assert [f for f, _ in d.violations] == ["type"]

    bad = pb.SendEventRequest(
        run_id=run.run_id, type="HumanResponseEvent", data=struct(response=["not", "text"])
    )
    code, d = await failure(served.stub.SendEvent(bad))
    assert (code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "EVENT_INVALID")
    assert [f for f, _ in d.violations] == ["data.response"]
    assert d.metadata["run_id"] == run.run_id

    await served.stub.CancelRun(pb.CancelRunRequest(run_id=run.run_id))
    late = pb.SendEventRequest(
        run_id=run.run_id, type="HumanResponseEvent", data=struct(response="yes")
    )
    code, d = await failure(served.stub.SendEvent(late))
    assert (code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RUN_ALREADY_ENDED")
    assert d.metadata == {"run_id": run.run_id, "status": "CANCELLED"}
    code, d = await failure(served.stub.CancelRun(pb.CancelRunRequest(run_id=run.run_id)))
    assert d.reason == "RUN_ALREADY_ENDED"


async def test_run_id_reused_with_other_input(served: Served) -> None:
    await served.stub.RunWorkflow(req("echo", _run_id="same", message="a"))
    code, d = await failure(served.stub.RunWorkflow(req("echo", _run_id="same", message="b")))
    assert (code, d.reason) == (grpc.StatusCode.ALREADY_EXISTS, "RUN_ALREADY_EXISTS")
    assert d.metadata == {"run_id": "same", "workflow": "echo"}


async def test_too_many_runs_says_when_to_retry(store_url: str) -> None:
    server, port = await serve(store_url, max_concurrent_runs=1)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            served = Served(server, port, channel)
            await served.start("sleep", seconds=5)
            code, d = await failure(served.stub.RunWorkflow(req("sleep", seconds=5)))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert d.reason == "TOO_MANY_RUNS"
            assert d.metadata["limit"] == "1"
            assert d.retry_delay is not None and 0 < d.retry_delay <= 60
    finally:
        await server.stop(0)


async def test_shutting_down(served: Served) -> None:
    await served.start("sleep", seconds=0.5)  # keeps the server draining for a while
    stopping = asyncio.ensure_future(served.server.stop(grace=1))
    await asyncio.sleep(0.05)
    code, d = await failure(served.stub.RunWorkflow(req("echo", message="late")))
    assert (code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
    assert d.retry_delay is not None
    await stopping


async def test_stream_cut_by_a_restart_says_where_to_resume(tmp_path: Any) -> None:
    server, port = await serve(f"sqlite:///{tmp_path}/runs.db", shutdown_grace=0.05)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        served = Served(server, port, channel)
        start = req("ticker", count=10_000, interval_ms=20, _run_id="long")
        call = served.stub.StreamEvents(pb.StreamEventsRequest(start=start))
        seen: list[pb.WorkflowEvent] = []
        for _ in range(3):
            seen.append(await call.read())
        stopping = asyncio.ensure_future(server.stop())

        async def drain() -> None:
            while (event := await call.read()) is not grpc.aio.EOF:
                seen.append(event)

        code, d = await failure(drain())
        await stopping
    assert (code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
    assert d.metadata["run_id"] == "long"
    assert d.metadata["after_sequence"] == str(seen[-1].sequence)


async def test_result_too_large_fails_the_run(store_url: str) -> None:
    server, port = await serve(store_url, max_result_bytes=1000)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            served = Served(server, port, channel)
            ok = await served.stub.RunWorkflow(req("sized_result", _wait=True, size=900))
            assert ok.run.status == pb.RUN_STATUS_SUCCEEDED
            big = await served.stub.RunWorkflow(req("sized_result", _wait=True, size=2000))
            assert big.run.status == pb.RUN_STATUS_FAILED
            assert big.run.error.type == "ResultTooLargeError"
            assert not big.run.HasField("result")
            got = await served.stub.GetRun(pb.GetRunRequest(run_id=big.run.run_id))
            assert got.run.error.type == "ResultTooLargeError"
            events = await served.events(big.run.run_id)
            assert events[-1].kind == pb.EVENT_KIND_RUN_FAILED
            assert events[-1].type == "ResultTooLargeError"
    finally:
        await server.stop(0)


def test_a_service_error_without_its_own_reason_gets_the_code_name() -> None:
    class UnauthenticatedError(ServiceError):
        pass

    _, status = rich_status(grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError("no token"))
    from google.rpc import error_details_pb2

    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("UNAUTHENTICATED", "workflow.v1")
    assert status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]


def test_unexpected_errors_are_internal_without_their_message() -> None:
    message, status = rich_status(grpc.StatusCode.INTERNAL, KeyError("secret"))
    assert "secret" not in message and "secret" not in str(status)
    assert message == "internal error: KeyError"


def test_huge_bad_input_keeps_the_trailer_small() -> None:
    from service.errors import InvalidArgumentError

    error = InvalidArgumentError("x" * 10_000, "y" * 10_000)
    error.violations *= 100
    error.metadata["field"] *= 10
    message, status = rich_status(grpc.StatusCode.INVALID_ARGUMENT, error)
    assert len(status.SerializeToString()) < 6000
    assert len(message) <= 1024


async def test_a_handler_failing_unexpectedly_is_internal_and_logged(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(run_id: str) -> Any:
        raise KeyError("secret")

    monkeypatch.setattr(served.server.manager, "get", broken)
    with caplog.at_level("ERROR", logger="service"):
        code, d = await failure(served.stub.GetRun(pb.GetRunRequest(run_id="any")))
    assert code == grpc.StatusCode.INTERNAL
    assert "secret" not in str(d)
    [record] = [r for r in caplog.records if r.getMessage() == "handler_failed"]
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    # The server goes on answering.
    run = (await served.stub.RunWorkflow(req("echo", _wait=True, message="hi"))).run
    assert run.status == pb.RUN_STATUS_SUCCEEDED
