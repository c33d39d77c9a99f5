"""StreamEvents: order, completeness, replay, filters, many subscribers."""

import asyncio

import grpc
import pytest

from service._pb import workflow_pb2 as pb

from .conftest import Served, req

TERMINAL = {
    pb.EVENT_KIND_RUN_SUCCEEDED,
    pb.EVENT_KIND_RUN_FAILED,
    pb.EVENT_KIND_RUN_CANCELLED,
    pb.EVENT_KIND_RUN_TIMED_OUT,
}


def check_complete(events: list[pb.WorkflowEvent], run_id: str) -> None:
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert all(e.run_id == run_id for e in events)
    assert events[0].kind == pb.EVENT_KIND_RUN_STARTED
    assert events[-1].kind in TERMINAL
    assert sum(e.kind in TERMINAL for e in events) == 1


async def test_500_concurrent_runs_each_streamed_contiguously(served: Served) -> None:
    async def one(i: int) -> None:
        stream = served.stub.StreamEvents(
            pb.StreamEventsRequest(start=req("ticker", count=5, interval_ms=10, _run_id=f"t{i}"))
        )
        events = [e async for e in stream]
        check_complete(events, f"t{i}")
        assert events[-1].kind == pb.EVENT_KIND_RUN_SUCCEEDED
        ticks = [e.data.fields["n"].number_value for e in events if e.kind == pb.EVENT_KIND_STREAM]
        assert ticks == [1, 2, 3, 4, 5]

    await asyncio.gather(*(one(i) for i in range(500)))


async def test_event_fields(served: Served) -> None:
    run = await served.start("ticker", count=2, interval_ms=0)
    events = await served.events(run.run_id)
    check_complete(events, run.run_id)
    started = events[0]
    assert started.type == "TickerInput"
    assert started.data.fields["count"].number_value == 2
    step_started = next(e for e in events if e.kind == pb.EVENT_KIND_STEP_STARTED)
    assert (step_started.step, step_started.type) == ("tick", "TickerInput")
    stream = [e for e in events if e.kind == pb.EVENT_KIND_STREAM]
    assert [(e.type, e.step) for e in stream] == [("Progress", "tick")] * 2
    finished = next(e for e in events if e.kind == pb.EVENT_KIND_STEP_FINISHED)
    assert (finished.step, finished.type) == ("tick", "StopEvent")
    assert finished.data.fields["duration_ms"].number_value >= 0
    assert events[-1].data.fields["result"].number_value == 2
    assert all(e.time.seconds > 0 for e in events)


async def test_late_subscriber_gets_the_whole_history(served: Served) -> None:
    resp = await served.stub.RunWorkflow(req("ticker", _wait=True, count=4, interval_ms=0))
    events = await served.events(resp.run.run_id)
    check_complete(events, resp.run.run_id)
    assert len(events) == resp.run.last_sequence


async def test_events_nobody_reads_are_never_encoded(served: Served) -> None:
    resp = await served.stub.RunWorkflow(req("echo", _wait=True, message="hi"))
    store = served.server.manager.store
    if store.durable:
        pytest.skip("the SQLite store's writer encodes every event to store it")
    logged = list(store._logs[resp.run.run_id].events)  # type: ignore[attr-defined]
    assert len(logged) == resp.run.last_sequence == 4
    assert all(e._wire is None for e in logged)
    events = await served.events(resp.run.run_id)  # read at last: encoded now
    check_complete(events, resp.run.run_id)
    assert events[0].data.fields["message"].string_value == "hi"
    assert events[-1].data.fields["result"].string_value == "hi"
    assert all(e._wire is not None for e in logged)


async def test_after_sequence_replays_the_rest_then_follows_live(served: Served) -> None:
    run = await served.start("ticker", count=6, interval_ms=20)
    stream = served.stub.StreamEvents(pb.StreamEventsRequest(run_id=run.run_id))
    first = []
    async for e in stream:
        first.append(e)
        if len(first) == 5:
            break
    stream.cancel()
    rest = await served.events(run.run_id, after=5)
    check_complete(first + rest, run.run_id)


async def test_stream_past_the_end_of_an_ended_run_closes_at_once(served: Served) -> None:
    resp = await served.stub.RunWorkflow(req("echo", _wait=True, message="x"))
    last = resp.run.last_sequence
    assert await served.events(resp.run.run_id, after=last) == []
    assert await served.events(resp.run.run_id, after=last + 100) == []


async def test_kinds_filter_always_includes_the_terminal_event(served: Served) -> None:
    run = await served.start("ticker", count=3, interval_ms=0)
    only_stream = await served.events(run.run_id, kinds=[pb.EVENT_KIND_STREAM])
    assert [e.kind for e in only_stream] == [pb.EVENT_KIND_STREAM] * 3 + [
        pb.EVENT_KIND_RUN_SUCCEEDED
    ]
    terminal_only = await served.events(run.run_id, kinds=[pb.EVENT_KIND_RUN_CANCELLED])
    assert [e.kind for e in terminal_only] == [pb.EVENT_KIND_RUN_SUCCEEDED]


async def test_many_subscribers_each_get_everything(served: Served) -> None:
    run = await served.start("ticker", count=10, interval_ms=5)
    results = await asyncio.gather(*(served.events(run.run_id) for _ in range(20)))
    for events in results:
        check_complete(events, run.run_id)
    assert len({len(r) for r in results}) == 1


async def test_slow_subscriber_does_not_hold_up_the_run(served: Served) -> None:
    run = await served.start("ticker", count=50, interval_ms=0)
    stream = served.stub.StreamEvents(pb.StreamEventsRequest(run_id=run.run_id))
    seen = []
    async for e in stream:
        seen.append(e)
        if len(seen) == 1:
            # The subscriber dawdles; the run finishes regardless.
            for _ in range(100):
                got = (await served.stub.GetRun(pb.GetRunRequest(run_id=run.run_id))).run
                if got.status == pb.RUN_STATUS_SUCCEEDED:
                    break
                await asyncio.sleep(0.01)
            assert got.status == pb.RUN_STATUS_SUCCEEDED
    check_complete(seen, run.run_id)


async def test_start_and_stream_in_one_call_is_idempotent(served: Served) -> None:
    start = req("ticker", count=2, interval_ms=0, _run_id="one-call")
    first = [e async for e in served.stub.StreamEvents(pb.StreamEventsRequest(start=start))]
    again = [e async for e in served.stub.StreamEvents(pb.StreamEventsRequest(start=start))]
    check_complete(first, "one-call")
    assert [e.sequence for e in again] == [e.sequence for e in first]


async def _stream_code(served: Served, request: pb.StreamEventsRequest) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in served.stub.StreamEvents(request):
            pass
    return info.value.code()


async def test_stream_errors(served: Served) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert await _stream_code(served, pb.StreamEventsRequest()) == invalid
    assert await _stream_code(served, pb.StreamEventsRequest(run_id="x", after_sequence=-1)) == (
        invalid
    )
    assert await _stream_code(served, pb.StreamEventsRequest(run_id="missing")) == (
        grpc.StatusCode.NOT_FOUND
    )
    bad_start = pb.StreamEventsRequest(start=req("ticker", count=-5))
    assert await _stream_code(served, bad_start) == invalid
