"""Auth, metrics and tracing on one server: calls that auth refuses are still counted and
traced, and admitted calls still parent their runs' spans."""

import grpc
import pytest
from opentelemetry.trace import StatusCode

from service._pb import workflow_pb2 as pb
from service._pb import workflow_pb2_grpc as pb_grpc

from ..service.conftest import req
from ..service.test_metrics import until
from ..service.test_tracing import recording_provider
from .conftest import md, serve_secured

RUN_WORKFLOW = "/workflow.v1.WorkflowService/RunWorkflow"


async def test_refused_calls_are_counted_and_traced() -> None:
    provider, exporter = recording_provider()
    server, port = await serve_secured(metrics=True, metrics_port=0, tracer_provider=provider)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = pb_grpc.WorkflowServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.RunWorkflow(req("echo", message="no token", _wait=True))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.RunWorkflow(
                    req("echo", message="read only", _wait=True), metadata=md("reader")
                )
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            ok = await client.RunWorkflow(
                req("echo", message="admitted", _wait=True), metadata=md("runner")
            )
            assert ok.run.status == pb.RUN_STATUS_SUCCEEDED

        assert server.metrics_endpoint is not None
        metrics_port = server.metrics_endpoint.port
        handled = "grpc_server_handled_total"
        for code in ("UNAUTHENTICATED", "PERMISSION_DENIED", "OK"):
            await until(1, metrics_port, handled, grpc_method="RunWorkflow", grpc_code=code)

        spans = exporter.get_finished_spans()
        rpcs = [s for s in spans if s.name == RUN_WORKFLOW]
        codes = sorted(s.attributes["rpc.grpc.status_code"] for s in rpcs if s.attributes)
        assert codes == [0, 7, 16]  # OK, PERMISSION_DENIED, UNAUTHENTICATED
        assert [s.status.status_code for s in rpcs].count(StatusCode.ERROR) == 2
        [admitted] = [s for s in rpcs if s.attributes and s.attributes["rpc.grpc.status_code"] == 0]
        [run] = [s for s in spans if s.name == "workflow.run echo"]
        assert run.parent is not None and run.parent.span_id == admitted.context.span_id
    finally:
        await server.stop(0)
        provider.shutdown()
