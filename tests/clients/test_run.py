"""WorkflowClient.run against a real server: results, and many runs at once."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
from workflow_client import WorkflowClient

from service._pb import workflow_pb2 as pb
from service._pb import workflow_pb2_grpc as pb_grpc

from .conftest import Served


async def test_echo_returns_its_message(client: WorkflowClient) -> None:
    assert await client.run("echo", message="hi") == "hi"


async def test_ticker_returns_its_count(client: WorkflowClient) -> None:
    assert await client.run("ticker", count=3, interval_ms=1) == 3


async def test_flaky_succeeds_through_its_retries(client: WorkflowClient) -> None:
    assert await client.run("flaky", failures=2) == {"attempts": 3}


async def test_run_with_a_run_id_is_idempotent(client: WorkflowClient) -> None:
    assert await client.run("echo", run_id="same-run", message="once") == "once"
    assert await client.run("echo", run_id="same-run", message="once") == "once"
    runs = [r async for r in client.list_runs(workflow="echo")]
    assert [r.run_id for r in runs] == ["same-run"]


async def test_run_records_labels_and_result(client: WorkflowClient) -> None:
    await client.run("echo", run_id="labelled", labels={"team": "a"}, message="x")
    run = await client.get_run("labelled")
    assert run.status == "SUCCEEDED"
    assert run.ended
    assert run.result == "x"
    assert run.error is None
    assert run.input == {"message": "x"}
    assert run.labels == {"team": "a"}
    assert run.created_at is not None and run.ended_at is not None
    assert run.last_sequence >= 4  # started, step started, step finished, succeeded


async def test_200_concurrent_runs_on_one_client(client: WorkflowClient) -> None:
    n = 200
    await client.run("echo", message="warm-up")  # connect before timing
    began = time.perf_counter()
    results = await asyncio.gather(
        *(client.run("ticker", count=3, interval_ms=10) for _ in range(n))
    )
    elapsed = time.perf_counter() - began
    assert results == [3] * n
    # Serially this would take at least n * 3 * 10 ms = 6 s.
    assert elapsed < 4.0, f"{n} concurrent runs took {elapsed:.2f}s"


async def test_whole_numbers_come_back_as_int(client: WorkflowClient) -> None:
    result = await client.run("ticker", count=2, interval_ms=0)
    assert result == 2
    assert type(result) is int
    handle = client.stream("ticker", count=1, interval_ms=0)
    ticks = [e.data for e in [e async for e in handle.events()] if e.kind == "STREAM"]
    assert ticks == [{"n": 1, "count": 1}]
    assert all(type(v) is int for v in ticks[0].values())


async def test_input_may_name_fields_that_are_also_options(client: WorkflowClient) -> None:
    handle = await client.start("echo", input={"message": "m", "timeout": 5})
    run = await handle.get()
    assert run.input == {"message": "m", "timeout": 5}  # input, not the run's time limit
    assert await handle.result() == "m"
    assert await client.run("echo", input={"message": "a"}, message="b") == "b"


async def test_run_ids_made_by_client_and_server_are_uuid7_in_time_order(
    client: WorkflowClient, served: Served
) -> None:
    first = await client.start("echo", message="a")  # the client picks the id
    async with grpc.aio.insecure_channel(served.address) as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        request = pb.RunWorkflowRequest(workflow="echo")  # the server picks it
        request.input.update({"message": "b"})
        await asyncio.sleep(0.002)  # a later millisecond
        second = (await stub.RunWorkflow(request)).run.run_id
    for run_id in (first.run_id, second):
        assert len(run_id) == 32
        assert uuid.UUID(run_id).version == 7
    assert first.run_id < second
