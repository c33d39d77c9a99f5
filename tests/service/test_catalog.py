"""ListWorkflows, ListRuns, health and reflection."""

import asyncio

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from examples import WORKFLOWS
from service._pb import workflow_pb2 as pb
from service._pb.workflow_pb2_grpc import WorkflowServiceStub
from service.server import WorkflowServer
from service.store import MemoryStore

from .conftest import Served, req


async def test_list_workflows_describes_inputs_and_outside_events(served: Served) -> None:
    resp = await served.stub.ListWorkflows(pb.ListWorkflowsRequest())
    by_name = {w.name: w for w in resp.workflows}
    assert {"echo", "research", "ticker", "approval", "flaky"} <= set(by_name)
    ticker = by_name["ticker"].input_schema
    assert set(ticker.fields["properties"].struct_value.fields) == {"count", "interval_ms"}
    echo = by_name["echo"]
    assert echo.description
    assert [v.string_value for v in echo.input_schema.fields["required"].list_value.values] == [
        "message"
    ]
    approval = by_name["approval"]
    assert [e.type for e in approval.accepted_events] == ["HumanResponseEvent"]
    schema = approval.accepted_events[0].schema
    assert "response" in schema.fields["properties"].struct_value.fields
    assert list(by_name["research"].steps) == ["plan", "search", "combine"]


async def test_list_runs_filters_and_pages(served: Served) -> None:
    for i in range(7):
        await served.stub.RunWorkflow(
            pb.RunWorkflowRequest(
                workflow="echo",
                input=req("echo", message=str(i)).input,
                labels={"batch": "a" if i % 2 else "b"},
                run_id=f"list-{i}",
                wait=True,
            )
        )
    await served.start("sleep", seconds=0.5, _run_id="list-running")
    seen: list[str] = []
    token = ""
    while True:
        page = await served.stub.ListRuns(
            pb.ListRunsRequest(workflow="echo", page_size=3, page_token=token)
        )
        assert len(page.runs) <= 3
        seen += [r.run_id for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"list-{i}" for i in reversed(range(7))]
    labelled = await served.stub.ListRuns(pb.ListRunsRequest(labels={"batch": "a"}))
    assert sorted(r.run_id for r in labelled.runs) == ["list-1", "list-3", "list-5"]
    running = await served.stub.ListRuns(pb.ListRunsRequest(statuses=[pb.RUN_STATUS_RUNNING]))
    assert [r.run_id for r in running.runs] == ["list-running"]


@pytest.mark.parametrize(
    "request_",
    [
        pb.ListRunsRequest(page_token="garbage"),
        pb.ListRunsRequest(page_size=-1),
    ],
)
async def test_list_runs_bad_paging_is_invalid(served: Served, request_) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.ListRuns(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_runs_of_unknown_workflow_is_not_found(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.ListRuns(pb.ListRunsRequest(workflow="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_answers_for_the_server_and_the_service(served: Served) -> None:
    stub = health_pb2_grpc.HealthStub(served.channel)
    for name in ("", "workflow.v1.WorkflowService"):
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Check(health_pb2.HealthCheckRequest(service="no.Such"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_and_describes_the_service(served: Served) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(served.channel)

    async def ask(**kw) -> reflection_pb2.ServerReflectionResponse:
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**kw)]))
        return await anext(aiter(call))

    listed = await ask(list_services="")
    names = {s.name for s in listed.list_services_response.service}
    assert {"workflow.v1.WorkflowService", "grpc.health.v1.Health"} <= names
    found = await ask(file_containing_symbol="workflow.v1.WorkflowService")
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in found.file_descriptor_response.file_descriptor_proto
    ]
    ours = next(f for f in files if f.package == "workflow.v1")
    service = next(s for s in ours.service if s.name == "WorkflowService")
    assert {m.name for m in service.method} == {
        "RunWorkflow",
        "StreamEvents",
        "GetRun",
        "CancelRun",
        "SendEvent",
        "ListWorkflows",
        "ListRuns",
    }
    assert next(m for m in service.method if m.name == "StreamEvents").server_streaming


async def test_no_method_is_registered_with_grpcs_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service is served by generic handlers: grpc.aio waits on one pending request
    per registered method for every call it accepts."""
    registered: list[str] = []
    real = grpc.aio._server.Server.add_registered_method_handlers

    def record(self: grpc.aio.Server, service: str, handlers: dict) -> None:
        registered.append(service)
        real(self, service, handlers)

    monkeypatch.setattr(grpc.aio._server.Server, "add_registered_method_handlers", record)
    server = WorkflowServer(WORKFLOWS, store=MemoryStore())
    port = await server.start("127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            resp = await WorkflowServiceStub(channel).RunWorkflow(
                req("echo", _wait=True, message="generic")
            )
            assert resp.run.status == pb.RUN_STATUS_SUCCEEDED
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)
    assert registered == []


async def test_stop_refuses_new_runs_and_reports_not_serving(served: Served) -> None:
    stopping = asyncio.ensure_future(served.server.stop(grace=1))
    await asyncio.sleep(0.05)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.stub.RunWorkflow(req("echo", message="late"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    await stopping
