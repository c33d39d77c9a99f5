"""Bearer tokens against a real server: who may call what, on which workflows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service._pb import workflow_pb2 as pb
from service.logs import KeyValueFormatter
from tests.service.conftest import req, struct

from .conftest import TOKENS, Secured, md

Call = Callable[[Secured, Any], Awaitable[Any]]


async def _collect(stream: Any) -> list[Any]:
    return [m async for m in stream]


# One call of each method, with the given metadata (None: no metadata at all).
CALLS: dict[str, Call] = {
    "RunWorkflow": lambda s, m: s.stub.RunWorkflow(req("echo", message="hi"), metadata=m),
    "StreamEvents": lambda s, m: _collect(
        s.stub.StreamEvents(pb.StreamEventsRequest(start=req("echo", message="hi")), metadata=m)
    ),
    "GetRun": lambda s, m: s.stub.GetRun(pb.GetRunRequest(run_id="x"), metadata=m),
    "ListRuns": lambda s, m: s.stub.ListRuns(pb.ListRunsRequest(), metadata=m),
    "ListWorkflows": lambda s, m: s.stub.ListWorkflows(pb.ListWorkflowsRequest(), metadata=m),
    "CancelRun": lambda s, m: s.stub.CancelRun(pb.CancelRunRequest(run_id="x"), metadata=m),
    "SendEvent": lambda s, m: s.stub.SendEvent(
        pb.SendEventRequest(run_id="x", type="HumanResponseEvent"), metadata=m
    ),
}


async def code_of(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def details_of(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        (("authorization", "Bearer not-a-configured-token"),),
        (("authorization", f"Basic {TOKENS['admin'].secret}"),),
        (("authorization", "Bearer"),),
        (("authorization", f"Bearer {TOKENS['admin'].secret}x"),),
    ],
    ids=["none", "unknown", "not-bearer", "empty", "near-miss"],
)
async def test_every_method_refuses_a_call_without_a_valid_token(
    secured: Secured, metadata: Any
) -> None:
    for method, call in CALLS.items():
        error = await details_of(call(secured, metadata))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, method
        # It tells the caller what to send, and never echoes what was sent.
        assert "Bearer <token>" in (error.details() or "")
        assert TOKENS["admin"].secret not in (error.details() or "")
    # Nothing was started by any of those calls.
    runs = await secured.stub.ListRuns(pb.ListRunsRequest(), metadata=md("admin"))
    assert list(runs.runs) == []


async def test_the_bearer_scheme_is_case_insensitive(secured: Secured) -> None:
    metadata = (("authorization", f"bearer {TOKENS['reader'].secret}"),)
    resp = await secured.stub.ListWorkflows(pb.ListWorkflowsRequest(), metadata=metadata)
    assert "echo" in [w.name for w in resp.workflows]


async def test_health_checks_need_no_token(secured: Secured) -> None:
    health = health_pb2_grpc.HealthStub(secured.channel)
    for service in ("", "workflow.v1.WorkflowService"):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def _list_services(secured: Secured, metadata: Any) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(secured.channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=metadata
    )
    responses = [r async for r in call]
    return [s.name for s in responses[0].list_services_response.service]


async def _refused_reflection(secured: Secured) -> None:
    """Open the reflection stream without a token and read. Nothing is written: a write
    that meets a call the server has already refused fails in grpc.aio's client with
    INTERNAL in place of the server's status (grpc/grpc#36066), a race of that client's."""
    stub = reflection_pb2_grpc.ServerReflectionStub(secured.channel)
    call = stub.ServerReflectionInfo()
    await call.read()


async def test_reflection_needs_any_valid_token(secured: Secured) -> None:
    error = await details_of(_refused_reflection(secured))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    for name in TOKENS:  # every scope includes read
        assert "workflow.v1.WorkflowService" in await _list_services(secured, md(name))


# ---- scopes --------------------------------------------------------------------------------

OK, DENIED = grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND  # allowed through; the run "x" does not exist

SCOPE_TABLE = {
    #              Run  Stream  Get  ListRuns ListWf  Cancel  Send
    "reader": (DENIED, DENIED, NOT_FOUND, OK, OK, DENIED, DENIED),
    "runner": (OK, OK, NOT_FOUND, OK, OK, DENIED, DENIED),
    "operator": (DENIED, DENIED, NOT_FOUND, OK, OK, NOT_FOUND, NOT_FOUND),
    "admin": (OK, OK, NOT_FOUND, OK, OK, NOT_FOUND, NOT_FOUND),
}


@pytest.mark.parametrize("name", list(SCOPE_TABLE))
async def test_scopes_decide_which_methods_a_token_may_call(secured: Secured, name: str) -> None:
    got = tuple([await code_of(call(secured, md(name))) for call in CALLS.values()])
    assert dict(zip(CALLS, got, strict=True)) == dict(zip(CALLS, SCOPE_TABLE[name], strict=True))


async def test_streaming_an_existing_run_needs_read_only(secured: Secured) -> None:
    run = (
        await secured.stub.RunWorkflow(req("echo", message="a", _wait=True), metadata=md("runner"))
    ).run
    for name in TOKENS:
        events = await _collect(
            secured.stub.StreamEvents(pb.StreamEventsRequest(run_id=run.run_id), metadata=md(name))
        )
        assert events[-1].kind == pb.EVENT_KIND_RUN_SUCCEEDED


async def test_control_scope_cancels_and_answers_runs(secured: Secured) -> None:
    first = (
        await secured.stub.RunWorkflow(req("approval", question="?"), metadata=md("runner"))
    ).run
    second = (
        await secured.stub.RunWorkflow(req("approval", question="?"), metadata=md("runner"))
    ).run
    await wait_waiting(secured, first.run_id)
    await secured.stub.SendEvent(
        pb.SendEventRequest(
            run_id=first.run_id, type="HumanResponseEvent", data=struct(response="yes")
        ),
        metadata=md("operator"),
    )
    cancelled = await secured.stub.CancelRun(
        pb.CancelRunRequest(run_id=second.run_id), metadata=md("operator")
    )
    assert cancelled.run.run_id == second.run_id
    statuses = {
        r.run_id: r.status
        for r in (await secured.stub.ListRuns(pb.ListRunsRequest(), metadata=md("reader"))).runs
    }
    assert statuses == {
        first.run_id: pb.RUN_STATUS_SUCCEEDED,
        second.run_id: pb.RUN_STATUS_CANCELLED,
    }


async def wait_waiting(secured: Secured, run_id: str) -> None:
    for _ in range(500):
        run = (await secured.stub.GetRun(pb.GetRunRequest(run_id=run_id), metadata=md("admin"))).run
        if run.status == pb.RUN_STATUS_WAITING_FOR_INPUT:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} never waited for input")


# ---- tokens limited to some workflows ------------------------------------------------------


async def test_a_workflow_limited_token_touches_only_its_workflows(secured: Secured) -> None:
    team = md("echo-team")  # run + control on echo and approval
    stub = secured.stub
    # Its own workflows: start, stream-start, read, answer, cancel.
    mine = (await stub.RunWorkflow(req("echo", message="a", _wait=True), metadata=team)).run
    assert mine.status == pb.RUN_STATUS_SUCCEEDED
    streamed = await _collect(
        stub.StreamEvents(pb.StreamEventsRequest(start=req("echo", message="b")), metadata=team)
    )
    assert streamed[-1].kind == pb.EVENT_KIND_RUN_SUCCEEDED
    waiting = (await stub.RunWorkflow(req("approval", question="?"), metadata=team)).run
    await wait_waiting(secured, waiting.run_id)
    await stub.SendEvent(
        pb.SendEventRequest(
            run_id=waiting.run_id, type="HumanResponseEvent", data=struct(response="no")
        ),
        metadata=team,
    )
    assert (await stub.GetRun(pb.GetRunRequest(run_id=mine.run_id), metadata=team)).run == mine

    # Another workflow's run, started by the admin: every call on it is denied.
    other = (await stub.RunWorkflow(req("slow", seconds=30), metadata=md("admin"))).run
    denied: dict[str, Awaitable[Any]] = {
        "start": stub.RunWorkflow(req("slow", seconds=1), metadata=team),
        "stream-start": _collect(
            stub.StreamEvents(pb.StreamEventsRequest(start=req("slow", seconds=1)), metadata=team)
        ),
        "get": stub.GetRun(pb.GetRunRequest(run_id=other.run_id), metadata=team),
        "stream": _collect(
            stub.StreamEvents(pb.StreamEventsRequest(run_id=other.run_id), metadata=team)
        ),
        "cancel": stub.CancelRun(pb.CancelRunRequest(run_id=other.run_id), metadata=team),
        "send": stub.SendEvent(pb.SendEventRequest(run_id=other.run_id, type="X"), metadata=team),
        "list-filter": stub.ListRuns(pb.ListRunsRequest(workflow="slow"), metadata=team),
    }
    for what, call in denied.items():
        assert await code_of(call) == DENIED, what
    # A request naming no workflow is a bad request, not a refusal.
    unnamed = stub.RunWorkflow(pb.RunWorkflowRequest(), metadata=team)
    assert await code_of(unnamed) == grpc.StatusCode.INVALID_ARGUMENT
    # The other run goes on, untouched.
    run = (await stub.GetRun(pb.GetRunRequest(run_id=other.run_id), metadata=md("admin"))).run
    assert run.status in (pb.RUN_STATUS_PENDING, pb.RUN_STATUS_RUNNING)
    all_runs = (await stub.ListRuns(pb.ListRunsRequest(), metadata=md("admin"))).runs
    assert len(all_runs) == 4  # the denied starts started nothing


async def test_listing_shows_a_limited_token_only_its_workflows(
    store_url: str, tmp_path: Any
) -> None:
    from .conftest import serve_secured

    server, port = await serve_secured(store_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            s = Secured(server, port, channel)
            for workflow, n in [("echo", 3), ("ticker", 2), ("approval", 1)]:
                for i in range(n):
                    inputs = {"message": "m"} if workflow == "echo" else {}
                    if workflow == "ticker":
                        inputs = {"count": 1, "interval_ms": 1}
                    if workflow == "approval":
                        inputs = {"question": str(i)}
                    await s.stub.RunWorkflow(req(workflow, **inputs), metadata=md("admin"))

            team = md("echo-team")
            listed = await s.stub.ListWorkflows(pb.ListWorkflowsRequest(), metadata=team)
            assert [w.name for w in listed.workflows] == ["approval", "echo"]
            everything = await s.stub.ListWorkflows(
                pb.ListWorkflowsRequest(), metadata=md("reader")
            )
            assert len(everything.workflows) > 2

            # No filter: only its workflows' runs, paged as usual.
            seen: list[pb.Run] = []
            token = ""
            while True:
                page = await s.stub.ListRuns(
                    pb.ListRunsRequest(page_size=2, page_token=token), metadata=team
                )
                seen += page.runs
                token = page.next_page_token
                if not token:
                    break
            assert sorted(r.workflow for r in seen) == ["approval", "echo", "echo", "echo"]
            # A filter on its own workflow works as usual.
            echo = await s.stub.ListRuns(pb.ListRunsRequest(workflow="echo"), metadata=team)
            assert [r.workflow for r in echo.runs] == ["echo"] * 3
            # Unlimited tokens see all six.
            all_runs = await s.stub.ListRuns(pb.ListRunsRequest(), metadata=md("reader"))
            assert len(all_runs.runs) == 6
    finally:
        await server.stop(0)


async def test_each_call_sees_its_own_caller_under_concurrency(secured: Secured) -> None:
    """The caller bound to one call never leaks into another running at the same time."""
    stub = secured.stub
    other = (await stub.RunWorkflow(req("slow", seconds=30), metadata=md("admin"))).run
    mine = (await stub.RunWorkflow(req("echo", message="x", _wait=True), metadata=md("admin"))).run

    async def get(name: str, run_id: str) -> grpc.StatusCode:
        return await code_of(stub.GetRun(pb.GetRunRequest(run_id=run_id), metadata=md(name)))

    async def stream(name: str, run_id: str) -> grpc.StatusCode:
        return await code_of(
            _collect(stub.StreamEvents(pb.StreamEventsRequest(run_id=run_id), metadata=md(name)))
        )

    calls = []
    expected = []
    for i in range(60):
        name = "echo-team" if i % 2 else "reader"
        if i % 4 < 2:  # the slow run, which only the reader may see
            calls.append(get(name, other.run_id))
            expected.append(DENIED if name == "echo-team" else OK)
        else:  # the finished echo run, which both may read and stream
            calls.append((get if i % 3 else stream)(name, mine.run_id))
            expected.append(OK)
    assert list(await asyncio.gather(*calls)) == expected


# ---- logs ----------------------------------------------------------------------------------


async def test_rejections_are_logged_once_without_the_token(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "definitely-not-a-token-" + "z" * 20
    with caplog.at_level(logging.INFO):
        await code_of(CALLS["GetRun"](secured, (("authorization", f"Bearer {wrong}"),)))
        await code_of(CALLS["RunWorkflow"](secured, md("reader")))
        await code_of(CALLS["RunWorkflow"](secured, None))
        await secured.stub.RunWorkflow(req("echo", message="a", _wait=True), metadata=md("admin"))
    lines = [KeyValueFormatter().format(r) for r in caplog.records]
    rejected = [line for line in lines if "event=call_rejected" in line]
    assert len(rejected) == 3
    unknown, scope, missing = rejected
    assert "method=/workflow.v1.WorkflowService/GetRun" in unknown
    assert "reason=unknown_token" in unknown and "token_name=" not in unknown
    assert "reason=permission_denied" in scope and "token_name=reader" in scope
    assert "reason=missing_token" in missing
    assert all("peer=ipv4:127.0.0.1:" in m for m in (unknown, scope, missing))
    text = "\n".join(lines)
    for secret in [wrong, *(t.secret for t in TOKENS.values())]:
        assert secret not in text
