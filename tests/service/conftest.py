from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2

from examples import WORKFLOWS
from service import WorkflowServer
from service._pb import workflow_pb2 as pb
from service._pb import workflow_pb2_grpc as pb_grpc
from service.store import open_store

from .workflows import TEST_WORKFLOWS


class Served:
    """A running server and a raw stub connected to it."""

    def __init__(self, server: WorkflowServer, port: int, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.port = port
        self.channel = channel
        self.stub = pb_grpc.WorkflowServiceStub(channel)

    async def start(self, workflow: str, **input: Any) -> pb.Run:
        resp = await self.stub.RunWorkflow(req(workflow, **input))
        return resp.run

    async def events(self, run_id: str, after: int = 0, **kw: Any) -> list[pb.WorkflowEvent]:
        stream = self.stub.StreamEvents(
            pb.StreamEventsRequest(run_id=run_id, after_sequence=after, **kw)
        )
        return [e async for e in stream]


def struct(**data: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def req(workflow: str, *, _wait: bool = False, _run_id: str = "", **input: Any) -> Any:
    return pb.RunWorkflowRequest(
        workflow=workflow, input=struct(**input), wait=_wait, run_id=_run_id
    )


@dataclass
class Details:
    """What the grpc-status-details-bin trailer of an error says."""

    code: int
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[tuple[str, str]] = field(default_factory=list)
    retry_delay: float | None = None


def details(error: grpc.aio.AioRpcError) -> Details:
    """Decode the google.rpc.Status an error carries; fails the test when there is none."""
    raw = [v for k, v in error.trailing_metadata() or () if k == "grpc-status-details-bin"]
    assert raw, f"no status details on {error.code()}: {error.details()}"
    status = status_pb2.Status.FromString(raw[0])
    assert status.code == error.code().value[0]
    out = Details(code=status.code)
    for any_ in status.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        if any_.Unpack(info):
            out.reason, out.domain, out.metadata = info.reason, info.domain, dict(info.metadata)
        elif any_.Unpack(bad):
            out.violations = [(v.field, v.description) for v in bad.field_violations]
        elif any_.Unpack(retry):
            out.retry_delay = retry.retry_delay.ToNanoseconds() / 1e9
    return out


async def serve(store: str = "memory", **options: Any) -> tuple[WorkflowServer, int]:
    server = WorkflowServer({**WORKFLOWS, **TEST_WORKFLOWS}, store=open_store(store), **options)
    port = await server.start("127.0.0.1", 0)
    return server, port


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that serves runs against both stores."""
    return "memory" if request.param == "memory" else f"sqlite:///{tmp_path}/runs.db"


@pytest.fixture
async def served(store_url: str) -> AsyncIterator[Served]:
    server, port = await serve(store_url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Served(server, port, channel)
    await server.stop(0)
