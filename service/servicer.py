"""The RPC handlers: each converts its request, calls the run manager, converts the result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from . import convert, wire
from ._pb import workflow_pb2 as pb
from ._pb import workflow_pb2_grpc as pb_grpc
from .auth import Scope, allowed_workflows, authorize
from .errors import GrpcErrors, InvalidArgumentError, abort_with
from .interceptors import GenericOnly, call_metadata
from .logs import caller_trace_id
from .runs import RunManager

Ctx = grpc.aio.ServicerContext[Any, Any]
# An enum member is read through a Python-level descriptor (Python 3.11): once, here.
_RUN, _READ, _CONTROL = Scope.RUN, Scope.READ, Scope.CONTROL


class WorkflowServicer(pb_grpc.WorkflowServiceServicer):
    def __init__(self, manager: RunManager) -> None:
        self.manager = manager
        self._workflows = pb.ListWorkflowsResponse(
            workflows=[
                pb.WorkflowInfo(
                    name=name,
                    description=wf.description,
                    input_schema=convert.to_struct(wf.input_schema()),
                    accepted_events=[
                        pb.EventSchema(
                            type=t.__name__, schema=convert.to_struct(t.model_json_schema())
                        )
                        for t in wf.external_event_types()
                    ],
                    steps=list(wf.steps),
                )
                for name, wf in sorted(manager.workflows.items())
            ]
        )

    async def RunWorkflow(  # type: ignore[override]  # answers serialized: see add_to_server
        self, request: pb.RunWorkflowRequest, context: Ctx
    ) -> bytes:
        # As GrpcErrors does, without an async context manager's two coroutines per call.
        try:
            authorize(_RUN, request.workflow)
            trace_id = caller_trace_id(call_metadata(context))
            run = await self.manager.start(request, trace_id)
            if request.wait:
                run = await self.manager.wait(run.run_id)  # durable once it answers
            else:
                await self.manager.store.sync()  # the run exists once we say so, crash or not
            return wire.run_response(run.SerializeToString())
        except Exception as e:
            await abort_with(context, e)

    async def StreamEvents(  # type: ignore[override]  # sends encoded events: see add_to_server
        self, request: pb.StreamEventsRequest, context: Ctx
    ) -> AsyncIterator[bytes]:
        async with GrpcErrors(context):
            if request.after_sequence < 0:
                raise InvalidArgumentError("after_sequence", "must not be negative")
            target = request.WhichOneof("target")
            if target is None:
                raise InvalidArgumentError(
                    "run_id",
                    "set run_id to stream an existing run, or start to start one and stream it",
                )
            if target == "start":
                authorize(_RUN, request.start.workflow)
                trace_id = caller_trace_id(call_metadata(context))
                run_id = (await self.manager.start(request.start, trace_id)).run_id
            else:
                run_id = request.run_id
                await self._authorize_run(_READ, run_id)
            kinds = frozenset(request.kinds)
            async for event in self.manager.follow(run_id, request.after_sequence):
                if not kinds or event.kind in kinds or event.kind in convert.TERMINAL_KINDS:
                    yield event.wire

    async def GetRun(self, request: pb.GetRunRequest, context: Ctx) -> pb.GetRunResponse:
        async with GrpcErrors(context):
            run = await self.manager.get(request.run_id)
            authorize(_READ, run.workflow)
            return pb.GetRunResponse(run=run)

    async def CancelRun(self, request: pb.CancelRunRequest, context: Ctx) -> pb.CancelRunResponse:
        async with GrpcErrors(context):
            await self._authorize_run(_CONTROL, request.run_id)
            return pb.CancelRunResponse(run=await self.manager.cancel(request.run_id))

    async def SendEvent(self, request: pb.SendEventRequest, context: Ctx) -> pb.SendEventResponse:
        async with GrpcErrors(context):
            await self._authorize_run(_CONTROL, request.run_id)
            if not request.type:
                raise InvalidArgumentError("type", "the event's class name is required")
            self.manager.check_payload("data", request.data)
            data = convert.struct_to_dict(request.data)
            run = await self.manager.send_event(request.run_id, request.type, data)
            return pb.SendEventResponse(run=run)

    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: Ctx
    ) -> pb.ListWorkflowsResponse:
        visible = allowed_workflows()
        if visible is None:
            return self._workflows
        return pb.ListWorkflowsResponse(
            workflows=[w for w in self._workflows.workflows if w.name in visible]
        )

    async def ListRuns(self, request: pb.ListRunsRequest, context: Ctx) -> pb.ListRunsResponse:
        async with GrpcErrors(context):
            if request.workflow:
                authorize(_READ, request.workflow)
            return await self.manager.list_runs(request, allowed_workflows())

    async def _authorize_run(self, scope: Scope, run_id: str) -> None:
        """Check the caller may act on the run's workflow (looked up only for tokens
        limited to some workflows)."""
        if allowed_workflows() is not None:
            authorize(scope, (await self.manager.get(run_id)).workflow)


# The methods whose handlers return messages already serialized (bytes), sent as they are.
_PRESERIALIZED = frozenset({"RunWorkflow", "StreamEvents"})


def add_to_server(servicer: WorkflowServicer, server: GenericOnly) -> None:
    """Register ``servicer`` as the generated ``add_WorkflowServiceServicer_to_server``
    does, except that ``StreamEvents`` yields each event as the bytes the event log holds
    (``service.wire``) and ``RunWorkflow`` returns its response's bytes, which grpc sends
    without a serializer, and that the methods are served by a generic handler only (see
    ``GenericOnly``)."""
    service = pb.DESCRIPTOR.services_by_name["WorkflowService"]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        if method.client_streaming:
            raise NotImplementedError(f"{method.name}: client streaming is not served")
        request = getattr(pb, method.input_type.name)
        response = getattr(pb, method.output_type.name)
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=request.FromString,
            response_serializer=(
                None if method.name in _PRESERIALIZED else response.SerializeToString
            ),
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
