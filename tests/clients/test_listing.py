"""list_workflows and list_runs: schemas, paging, filters."""

from __future__ import annotations

from contextlib import aclosing

import grpc
import pytest
from workflow_client import InvalidArgumentError, NotFoundError, WorkflowClient
from workflow_client._pb import workflow_pb2 as pb

EXAMPLES = {"approval", "echo", "flaky", "research", "ticker"}


async def test_list_workflows_has_the_examples_with_schemas(client: WorkflowClient) -> None:
    workflows = await client.list_workflows()
    by_name = {w.name: w for w in workflows}
    assert set(by_name) >= EXAMPLES
    assert [w.name for w in workflows] == sorted(by_name)  # sorted by name
    for name in EXAMPLES:
        info = by_name[name]
        assert info.description
        assert info.steps
        assert info.input_schema.get("type") == "object"
        assert "properties" in info.input_schema
    assert set(by_name["ticker"].input_schema["properties"]) >= {"count", "interval_ms"}
    assert by_name["echo"].input_schema["properties"]["message"]["type"] == "string"
    assert "message" in by_name["echo"].input_schema.get("required", [])
    assert by_name["ticker"].steps == ["tick"]
    assert set(by_name["research"].steps) == {"plan", "search", "combine"}

    approval = by_name["approval"]
    assert "HumanResponseEvent" in approval.accepted_events
    assert "response" in approval.accepted_events["HumanResponseEvent"]["properties"]
    assert by_name["echo"].accepted_events == {}


async def test_list_runs_pages_newest_first_each_once(client: WorkflowClient) -> None:
    ids = [f"echo-{i}" for i in range(7)]
    for run_id in ids:
        await client.run("echo", run_id=run_id, message=run_id)
    await client.run("ticker", count=1, interval_ms=0)  # another workflow: filtered out

    runs = [r async for r in client.list_runs(workflow="echo", page_size=3)]
    assert [r.run_id for r in runs] == ids[::-1]
    assert all(r.status == "SUCCEEDED" and r.workflow == "echo" for r in runs)

    # The server really paged: 3 + 3 + 1.
    sizes = []
    token = ""
    while True:
        resp = await client.stub.ListRuns(
            pb.ListRunsRequest(workflow="echo", page_size=3, page_token=token)
        )
        sizes.append(len(resp.runs))
        token = resp.next_page_token
        if not token:
            break
    assert sizes == [3, 3, 1]

    everything = [r async for r in client.list_runs()]
    assert len(everything) == 8


async def test_list_runs_filters_by_labels_and_statuses(client: WorkflowClient) -> None:
    await client.run("echo", run_id="a1", labels={"team": "a", "env": "dev"}, message="x")
    await client.run("echo", run_id="a2", labels={"team": "a", "env": "prod"}, message="x")
    await client.run("echo", run_id="b1", labels={"team": "b"}, message="x")
    waiting = await client.start("approval", run_id="w1", labels={"team": "a"}, question="ok?")
    async with aclosing(waiting.events(kinds=["INPUT_REQUIRED"])) as events:
        async for _ in events:
            break  # it now waits for input
    cancelled = await client.start("slow", run_id="c1", labels={"team": "b"}, seconds=30)
    await cancelled.cancel()

    async def ids(**filters: object) -> list[str]:
        return [r.run_id async for r in client.list_runs(**filters)]  # type: ignore[arg-type]

    assert await ids(labels={"team": "a"}) == ["w1", "a2", "a1"]
    assert await ids(labels={"team": "a", "env": "prod"}) == ["a2"]
    assert await ids(labels={"team": "c"}) == []
    assert await ids(workflow="echo", labels={"team": "b"}) == ["b1"]
    assert await ids(statuses=["SUCCEEDED"]) == ["b1", "a2", "a1"]
    assert await ids(statuses=["cancelled"]) == ["c1"]
    assert await ids(statuses=["WAITING_FOR_INPUT"]) == ["w1"]
    assert await ids(statuses=["CANCELLED", "WAITING_FOR_INPUT"]) == ["c1", "w1"]
    assert await ids(statuses=["SUCCEEDED"], labels={"team": "b"}, page_size=1) == ["b1"]
    assert await ids(statuses=["FAILED"]) == []

    await waiting.cancel()


async def test_list_runs_errors(client: WorkflowClient) -> None:
    with pytest.raises(NotFoundError):
        [r async for r in client.list_runs(workflow="no-such-workflow")]
    with pytest.raises(InvalidArgumentError):
        [r async for r in client.list_runs(page_size=-1)]
    with pytest.raises(grpc.aio.AioRpcError) as raw:  # the raw stub is not mapped
        await client.stub.ListRuns(pb.ListRunsRequest(page_token="not-a-token"))
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
