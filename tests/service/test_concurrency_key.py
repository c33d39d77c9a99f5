"""Per-key concurrency limits: the concurrency_key label, queued or refused extra runs."""

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from service import WorkflowServer
from service._pb import workflow_pb2 as pb
from service._pb import workflow_pb2_grpc as pb_grpc

from .conftest import serve, struct

Serving = Callable[..., Awaitable[pb_grpc.WorkflowServiceStub]]


@pytest.fixture
async def serving(store_url: str) -> AsyncIterator[Serving]:
    """Starts a server with the given options; stops it (and its channel) at the end."""
    opened: list[tuple[WorkflowServer, grpc.aio.Channel]] = []

    async def start(**options: Any) -> pb_grpc.WorkflowServiceStub:
        server, port = await serve(store_url, **options)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        opened.append((server, channel))
        return pb_grpc.WorkflowServiceStub(channel)

    yield start
    for server, channel in opened:
        await channel.close()
        await server.stop(0)


def keyed(workflow: str, key: str | None, run_id: str = "", **input: Any) -> pb.RunWorkflowRequest:
    labels = {"concurrency_key": key} if key is not None else {}
    return pb.RunWorkflowRequest(
        workflow=workflow, input=struct(**input), run_id=run_id, labels=labels
    )


async def wait_ended(stub: pb_grpc.WorkflowServiceStub, run: pb.Run) -> pb.Run:
    """Waits for the run through an idempotent RunWorkflow(wait=True) of the same request."""
    again = pb.RunWorkflowRequest(
        workflow=run.workflow, input=run.input, run_id=run.run_id, wait=True
    )
    return (await stub.RunWorkflow(again, timeout=20)).run


async def test_runs_beyond_the_key_limit_wait_and_run_one_after_another_in_order(
    serving: Serving,
) -> None:
    stub = await serving(max_runs_per_key=1)
    runs = [
        (await stub.RunWorkflow(keyed("sleep", "tenant-a", seconds=0.15))).run for _ in range(4)
    ]
    assert runs[0].status == pb.RUN_STATUS_RUNNING
    assert [r.status for r in runs[1:]] == [pb.RUN_STATUS_PENDING] * 3
    ended = [await wait_ended(stub, r) for r in runs]
    assert [r.status for r in ended] == [pb.RUN_STATUS_SUCCEEDED] * 4
    for before, after in itertools.pairwise(ended):
        # never two at once, and in the order they arrived
        assert after.started_at.ToNanoseconds() >= before.ended_at.ToNanoseconds()


async def test_other_keys_and_runs_without_a_key_are_not_held_back(serving: Serving) -> None:
    stub = await serving(max_runs_per_key=1)
    first = (await stub.RunWorkflow(keyed("sleep", "a", seconds=1.0))).run
    other = (await stub.RunWorkflow(keyed("sleep", "b", seconds=0.0))).run
    free = (await stub.RunWorkflow(keyed("sleep", None, seconds=0.0))).run
    started = (pb.RUN_STATUS_RUNNING, pb.RUN_STATUS_SUCCEEDED)
    assert other.status in started and free.status in started
    assert (await wait_ended(stub, other)).status == pb.RUN_STATUS_SUCCEEDED
    assert (await wait_ended(stub, free)).status == pb.RUN_STATUS_SUCCEEDED
    got = await stub.GetRun(pb.GetRunRequest(run_id=first.run_id))
    assert got.run.status == pb.RUN_STATUS_RUNNING


async def test_the_limit_allows_that_many_at_once(serving: Serving) -> None:
    stub = await serving(max_runs_per_key=2)
    runs = [(await stub.RunWorkflow(keyed("sleep", "k", seconds=0.3))).run for _ in range(3)]
    assert [r.status for r in runs] == [
        pb.RUN_STATUS_RUNNING,
        pb.RUN_STATUS_RUNNING,
        pb.RUN_STATUS_PENDING,
    ]
    ended = [await wait_ended(stub, r) for r in runs]
    assert ended[2].started_at.ToNanoseconds() >= min(
        ended[0].ended_at.ToNanoseconds(), ended[1].ended_at.ToNanoseconds()
    )


async def test_reject_overflow_refuses_with_resource_exhausted_until_a_slot_frees(
    serving: Serving,
) -> None:
    stub = await serving(max_runs_per_key=1, key_overflow="reject")
    first = (await stub.RunWorkflow(keyed("sleep", "k", run_id="first", seconds=0.3))).run
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.RunWorkflow(keyed("sleep", "k", seconds=0.0))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "concurrency_key" in (refused.value.details() or "")
    # repeating the accepted request is still answered with its run
    again = await stub.RunWorkflow(keyed("sleep", "k", run_id="first", seconds=0.3))
    assert again.run.run_id == first.run_id
    await wait_ended(stub, first)
    later = (await stub.RunWorkflow(keyed("sleep", "k", seconds=0.0))).run
    assert later.status in (pb.RUN_STATUS_RUNNING, pb.RUN_STATUS_SUCCEEDED)


async def test_a_queued_run_streams_from_its_start_once_it_gets_a_slot(serving: Serving) -> None:
    stub = await serving(max_runs_per_key=1)
    await stub.RunWorkflow(keyed("sleep", "k", seconds=0.2))
    queued = (await stub.RunWorkflow(keyed("echo", "k", message="hi"))).run
    events = [e async for e in stub.StreamEvents(pb.StreamEventsRequest(run_id=queued.run_id))]
    assert events[0].kind == pb.EVENT_KIND_RUN_STARTED
    assert events[-1].kind == pb.EVENT_KIND_RUN_SUCCEEDED
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))


async def test_cancelling_a_queued_run_ends_it_and_the_queue_moves_on(serving: Serving) -> None:
    stub = await serving(max_runs_per_key=1)
    head = (await stub.RunWorkflow(keyed("sleep", "k", seconds=0.3))).run
    doomed = (await stub.RunWorkflow(keyed("sleep", "k", seconds=0.0))).run
    behind = (await stub.RunWorkflow(keyed("sleep", "k", seconds=0.0))).run
    cancelled = (await stub.CancelRun(pb.CancelRunRequest(run_id=doomed.run_id))).run
    assert cancelled.status == pb.RUN_STATUS_CANCELLED
    events = [e async for e in stub.StreamEvents(pb.StreamEventsRequest(run_id=doomed.run_id))]
    assert [e.kind for e in events] == [pb.EVENT_KIND_RUN_CANCELLED]
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stub.CancelRun(pb.CancelRunRequest(run_id=doomed.run_id))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await wait_ended(stub, head)).status == pb.RUN_STATUS_SUCCEEDED
    assert (await wait_ended(stub, behind)).status == pb.RUN_STATUS_SUCCEEDED
    got = (await stub.GetRun(pb.GetRunRequest(run_id=doomed.run_id))).run
    assert got.status == pb.RUN_STATUS_CANCELLED and not got.HasField("started_at")


async def test_an_event_sent_to_a_queued_run_reaches_it_when_it_starts(serving: Serving) -> None:
    stub = await serving(max_runs_per_key=1)
    await stub.RunWorkflow(keyed("sleep", "k", seconds=0.2))
    queued = (await stub.RunWorkflow(keyed("late_wait", "k", seconds=0.0))).run
    assert queued.status == pb.RUN_STATUS_PENDING
    await stub.SendEvent(
        pb.SendEventRequest(run_id=queued.run_id, type="Answer", data=struct(response="yes"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.SendEvent(
            pb.SendEventRequest(run_id=queued.run_id, type="Answer", data=struct(nope=1))
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ended = await wait_ended(stub, queued)
    assert ended.status == pb.RUN_STATUS_SUCCEEDED
    assert ended.result.string_value == "yes"


async def test_queued_runs_count_toward_the_server_wide_cap(serving: Serving) -> None:
    stub = await serving(max_runs_per_key=1, max_concurrent_runs=2)
    await stub.RunWorkflow(keyed("sleep", "k", seconds=0.3))
    await stub.RunWorkflow(keyed("sleep", "k", seconds=0.0))
    with pytest.raises(grpc.aio.AioRpcError) as full:
        await stub.RunWorkflow(keyed("sleep", "k", seconds=0.0))
    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_queued_runs_and_their_events_survive_a_restart(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    server, port = await serve(url, max_runs_per_key=1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        head = (await stub.RunWorkflow(keyed("sleep", "k", run_id="head", seconds=5.0))).run
        second = (await stub.RunWorkflow(keyed("late_wait", "k", run_id="second"))).run
        third = (await stub.RunWorkflow(keyed("echo", "k", run_id="third", message="m"))).run
        await stub.SendEvent(
            pb.SendEventRequest(run_id=second.run_id, type="Answer", data=struct(response="ok"))
        )
    await server.stop(0)  # the durable runs are left for the next start

    server, port = await serve(url, max_runs_per_key=1)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.WorkflowServiceStub(channel)
            got = [(await stub.GetRun(pb.GetRunRequest(run_id=r))).run for r in ("second", "third")]
            assert [r.status for r in got] == [pb.RUN_STATUS_PENDING] * 2
            await stub.CancelRun(pb.CancelRunRequest(run_id=head.run_id))
            ended = [await wait_ended(stub, r) for r in (second, third)]
            assert [r.status for r in ended] == [pb.RUN_STATUS_SUCCEEDED] * 2
            assert ended[0].result.string_value == "ok"
            assert ended[1].started_at.ToNanoseconds() >= ended[0].ended_at.ToNanoseconds()
    finally:
        await server.stop(0)


async def test_shutdown_cancels_queued_runs_that_cannot_be_kept() -> None:
    server, port = await serve("memory", max_runs_per_key=1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        await stub.RunWorkflow(keyed("sleep", "k", seconds=5.0))
        queued = (await stub.RunWorkflow(keyed("sleep", "k", seconds=0.0))).run
        stream = stub.StreamEvents(pb.StreamEventsRequest(run_id=queued.run_id))
        await asyncio.sleep(0.2)  # the stream is open on the server
        stopping = asyncio.ensure_future(server.stop(0))
        events = [e async for e in stream]
        await stopping
    assert events[-1].kind == pb.EVENT_KIND_RUN_CANCELLED
