"""SyncWorkflowClient from plain (non-async) test functions, against a server running on its
own event loop in a background thread."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator

import pytest
from workflow_client import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    RunCancelledError,
    RunFailedError,
    RunTimedOutError,
    SyncWorkflowClient,
)

from .helpers import ServerThread


@pytest.fixture
def sync_client(server_thread: ServerThread) -> Iterator[SyncWorkflowClient]:
    with SyncWorkflowClient(server_thread.address, reconnect_delay=0.05) as client:
        yield client


def test_run(sync_client: SyncWorkflowClient) -> None:
    assert sync_client.run("echo", message="hi") == "hi"
    assert sync_client.run("ticker", count=3, interval_ms=1) == 3
    assert sync_client.run("flaky", failures=1) == {"attempts": 2}


def test_start_and_events(sync_client: SyncWorkflowClient) -> None:
    handle = sync_client.start("ticker", count=5, interval_ms=5)
    events = list(handle.events())
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].kind == "RUN_STARTED"
    assert events[-1].kind == "RUN_SUCCEEDED"
    assert sum(e.kind == "STREAM" for e in events) == 5
    assert handle.result() == 5
    assert handle.get().status == "SUCCEEDED"
    assert sync_client.get_run(handle.run_id).last_sequence == events[-1].sequence


def test_stream(sync_client: SyncWorkflowClient) -> None:
    handle = sync_client.stream("ticker", count=4, interval_ms=1)
    kinds = [e.kind for e in handle.events(kinds=["STREAM"])]
    assert kinds == ["STREAM"] * 4 + ["RUN_SUCCEEDED"]
    assert handle.result() == 4


def test_send_event(sync_client: SyncWorkflowClient) -> None:
    handle = sync_client.start("approval", question="merge?")
    for event in handle.events():
        if event.kind == "INPUT_REQUIRED":
            assert event.data["question"] == "merge?"
            handle.send_event("HumanResponseEvent", response="yes")
    assert handle.result() == {"approved": True, "response": "yes"}

    other = sync_client.start("approval", question="again?")
    next(iter(other.events(kinds=["INPUT_REQUIRED"])))
    sync_client.send_event(other.run_id, "HumanResponseEvent", response="nope")
    assert sync_client.handle(other.run_id).result() == {"approved": False, "response": "nope"}


def test_errors_are_typed(sync_client: SyncWorkflowClient) -> None:
    with pytest.raises(NotFoundError):
        sync_client.run("no-such-workflow")
    with pytest.raises(NotFoundError):
        sync_client.get_run("no-such-run")
    with pytest.raises(InvalidArgumentError) as bad:
        sync_client.run("ticker", count=-1)
    assert "count" in bad.value.details
    sync_client.run("echo", run_id="sync-dup", message="a")
    with pytest.raises(AlreadyExistsError):
        sync_client.run("echo", run_id="sync-dup", message="b")
    with pytest.raises(FailedPreconditionError):
        sync_client.cancel("sync-dup")
    with pytest.raises(RunFailedError) as failed:
        sync_client.run("boom")
    assert failed.value.run.error is not None
    assert failed.value.run.error.step == "explode"
    with pytest.raises(RunTimedOutError):
        sync_client.run("slow", timeout=0.05, seconds=5)

    handle = sync_client.start("approval", question="?")
    with pytest.raises(InvalidArgumentError):
        handle.send_event("NoSuchEvent")
    assert handle.cancel().status == "CANCELLED"
    with pytest.raises(RunCancelledError):
        handle.result()
    with pytest.raises(NotFoundError):
        list(sync_client.handle("no-such-run").events())


def test_list(sync_client: SyncWorkflowClient) -> None:
    names = {w.name for w in sync_client.list_workflows()}
    assert {"approval", "echo", "flaky", "research", "ticker"} <= names
    ids = [f"sync-list-{i}" for i in range(5)]
    for run_id in ids:
        sync_client.run("echo", run_id=run_id, labels={"suite": "sync-list"}, message=run_id)
    listed = [r.run_id for r in sync_client.list_runs(labels={"suite": "sync-list"}, page_size=2)]
    assert listed == ids[::-1]


def test_leaving_events_early_leaves_nothing_pending(
    server_thread: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        client = SyncWorkflowClient(server_thread.address)
        handle = client.start("approval", question="left waiting?")
        run_id = handle.run_id
        for event in handle.events():  # left with break: its stream must end
            assert event.kind == "RUN_STARTED"
            break
        assert client.get_run(run_id).status in {"RUNNING", "WAITING_FOR_INPUT"}
        kept_open = client.handle(run_id).events()  # still open when the client closes
        assert next(kept_open).kind == "RUN_STARTED"
        client.close()
        del kept_open, handle, client
        gc.collect()
        time.sleep(0.2)  # anything grpc still had in flight for the closed loop lands now
    with SyncWorkflowClient(server_thread.address) as other:
        assert other.cancel(run_id).status == "CANCELLED"
    # Only the client's own leftovers count here (the server thread logs to the same place).
    signs = ("Task was destroyed", "_AioCall", "PollerCompletionQueue", "loop is closed")
    logged = [caplog.handler.format(r) for r in caplog.records]
    leftovers = [text for text in logged if any(sign in text for sign in signs)]
    assert leftovers == []


def test_errors_carry_their_details(sync_client: SyncWorkflowClient) -> None:
    with pytest.raises(NotFoundError) as missing:
        sync_client.get_run("no-such-run")
    assert (missing.value.reason, missing.value.metadata) == (
        "RUN_NOT_FOUND",
        {"run_id": "no-such-run"},
    )
    with pytest.raises(InvalidArgumentError) as bad:
        sync_client.run("ticker", count=-1, interval_ms="soon")
    assert bad.value.reason == "INPUT_INVALID"
    assert sorted(v.field for v in bad.value.field_violations) == [
        "input.count",
        "input.interval_ms",
    ]
