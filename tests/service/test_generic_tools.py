"""Clients with no copy of the proto: buf curl, and descriptors fetched by reflection."""

import asyncio
import json
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from .conftest import Served

BUF = Path(__file__).resolve().parents[2] / "tools" / "buf" / "node_modules" / ".bin" / "buf"


async def buf_curl(port: int, method: str, body: dict) -> dict:
    proc = await asyncio.create_subprocess_exec(
        str(BUF),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-d",
        json.dumps(body),
        f"http://127.0.0.1:{port}/workflow.v1.WorkflowService/{method}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def test_buf_curl_runs_a_workflow_through_reflection(served: Served) -> None:
    body = {"workflow": "echo", "input": {"message": "from buf"}, "wait": True}
    reply = await buf_curl(served.port, "RunWorkflow", body)
    assert reply["run"]["status"] == "RUN_STATUS_SUCCEEDED"
    assert reply["run"]["result"] == "from buf"
    listed = await buf_curl(served.port, "ListWorkflows", {})
    assert "ticker" in {w["name"] for w in listed["workflows"]}


async def test_reflection_gives_descriptors_enough_to_call_the_service(served: Served) -> None:
    """Build the messages from reflection alone, in a pool of their own, and make a call."""
    stub = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    call = stub.ServerReflectionInfo(
        iter(
            [
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="workflow.v1.WorkflowService"
                )
            ]
        )
    )
    reply = await anext(aiter(call))
    pool = descriptor_pool.DescriptorPool()
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]
    added: set[str] = set()
    while len(added) < len(files):  # dependencies first
        for f in files:
            if f.name not in added and all(d in added for d in f.dependency):
                pool.Add(f)
                added.add(f.name)
    service = pool.FindServiceByName("workflow.v1.WorkflowService")
    method = service.methods_by_name["RunWorkflow"]
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    request = request_cls(workflow="echo", wait=True)
    request.input.update({"message": "generic"})
    rpc = served.channel.unary_unary(
        "/workflow.v1.WorkflowService/RunWorkflow",
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    response = await rpc(request)
    assert response.run.result.string_value == "generic"
    assert {m.name for m in service.methods} >= {"RunWorkflow", "StreamEvents", "SendEvent"}
