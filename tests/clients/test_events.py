"""Streaming a run's events: order, kinds, start-and-stream, and human in the loop."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

from workflow_client import Event, WorkflowClient


def check_ticker_events(events: list[Event], count: int) -> None:
    sequences = [e.sequence for e in events]
    assert sequences == list(range(1, len(events) + 1))
    kinds = [e.kind for e in events]
    assert kinds[0] == "RUN_STARTED"
    assert kinds[-1] == "RUN_SUCCEEDED"
    assert [k for k in kinds if k in {"RUN_SUCCEEDED", "RUN_FAILED"}] == ["RUN_SUCCEEDED"]
    stream = [e for e in events if e.kind == "STREAM"]
    assert len(stream) == count
    assert [e.data["n"] for e in stream] == list(range(1, count + 1))
    assert all(e.type == "Progress" and e.step == "tick" for e in stream)
    assert events[0].data == {"count": count, "interval_ms": 5}
    assert events[-1].data["result"] == count
    assert len({e.run_id for e in events}) == 1
    assert all(e.time is not None for e in events)


async def test_start_then_events(client: WorkflowClient) -> None:
    handle = await client.start("ticker", count=5, interval_ms=5)
    events = [e async for e in handle.events()]
    check_ticker_events(events, 5)
    assert events[0].run_id == handle.run_id
    assert await handle.result() == 5
    run = await handle.get()
    assert run.status == "SUCCEEDED"
    assert run.last_sequence == events[-1].sequence


async def test_stream_starts_and_streams_in_one_call(client: WorkflowClient) -> None:
    handle = client.stream("ticker", count=5, interval_ms=5)
    events = [e async for e in handle.events()]
    check_ticker_events(events, 5)
    assert events[0].run_id == handle.run_id
    assert await handle.result() == 5


async def test_events_after_and_replay(client: WorkflowClient) -> None:
    handle = await client.start("ticker", count=5, interval_ms=5)
    everything = [e async for e in handle.events()]
    # An ended run replays its whole history, and `after` skips a prefix.
    assert [e async for e in handle.events()] == everything
    tail = [e async for e in handle.events(after=3)]
    assert tail == everything[3:]
    # Resuming after the terminal event: nothing is left, and it ends at once.
    began = time.perf_counter()
    assert [e async for e in handle.events(after=everything[-1].sequence)] == []
    assert time.perf_counter() - began < 0.5


async def test_events_filtered_by_kind_still_end_with_terminal(client: WorkflowClient) -> None:
    handle = await client.start("ticker", count=5, interval_ms=5)
    events = [e async for e in handle.events(kinds=["STREAM"])]
    assert [e.kind for e in events] == ["STREAM"] * 5 + ["RUN_SUCCEEDED"]
    sequences = [e.sequence for e in events]
    assert sequences == sorted(sequences)


async def test_failed_run_ends_its_stream_with_run_failed(client: WorkflowClient) -> None:
    events = [e async for e in client.stream("boom").events()]
    assert events[-1].kind == "RUN_FAILED"
    assert events[-1].data["step"] == "explode"
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))


async def test_human_in_the_loop(client: WorkflowClient) -> None:
    handle = await client.start("approval", question="Deploy to production?")
    seen: list[Event] = []
    async with aclosing(handle.events()) as events:
        async for event in events:
            seen.append(event)
            if event.kind == "INPUT_REQUIRED":
                break
    request = seen[-1]
    assert request.kind == "INPUT_REQUIRED"
    assert request.data["question"] == "Deploy to production?"
    assert (await handle.get()).status == "WAITING_FOR_INPUT"

    await handle.send_event("HumanResponseEvent", response="yes")
    assert await handle.result() == {"approved": True, "response": "yes"}

    rest = [e async for e in handle.events(after=request.sequence)]
    assert rest[-1].kind == "RUN_SUCCEEDED"
    assert rest[0].sequence == request.sequence + 1


async def test_human_says_no(client: WorkflowClient) -> None:
    handle = client.stream("approval", question="Delete everything?")
    async for event in handle.events():
        if event.kind == "INPUT_REQUIRED":
            await client.send_event(handle.run_id, "HumanResponseEvent", response="no")
        last = event
    assert last.kind == "RUN_SUCCEEDED"
    assert await handle.result() == {"approved": False, "response": "no"}


async def test_leaving_events_early_ends_the_call(client: WorkflowClient) -> None:
    handle = await client.start("approval", question="left waiting?")
    async with aclosing(handle.events()) as events:
        async for _ in events:
            break
    await asyncio.sleep(0.01)
    # The stream was cancelled, not left open until the run ends (this one never would).
    open_calls = [t for t in asyncio.all_tasks() if "_handle_status_once_received" in repr(t)]
    assert open_calls == []
    await handle.cancel()
