"""The service's lean spans: what SDK processors, exporters and samplers make of them."""

import json
import secrets
from collections.abc import Sequence

import grpc
import pytest
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

from service._pb import workflow_pb2 as pb
from service.spans import (
    MAX_ATTRIBUTES,
    LeanTracer,
    _ratio_bound,
    _span_context,
    attach,
    current_context,
    detach,
    service_tracer,
    with_span,
)

from .conftest import Served, req, serve
from .test_tracing import Traced, recording_provider, traceparent

RPC = "/workflow.v1.WorkflowService/RunWorkflow"


def names(spans: Sequence[ReadableSpan]) -> list[str]:
    return sorted(s.name for s in spans)


def test_sdk_providers_get_the_lean_tracer_and_others_their_own() -> None:
    provider, _ = recording_provider()
    assert isinstance(service_tracer(provider, "workflow-service"), LeanTracer)
    api = trace.NoOpTracerProvider()
    assert not isinstance(service_tracer(api, "workflow-service"), LeanTracer)


def test_span_contexts_and_contexts_are_the_apis_own() -> None:
    state = TraceState([("k", "v")])
    for trace_id, span_id in ((7, 1), (7, 0x1234), (2**128 - 1, 2**64 - 1), (7, 0), (0, 5)):
        made = _span_context(trace_id, span_id, TraceFlags(1), state)
        api = SpanContext(trace_id, span_id, False, TraceFlags(1), state)
        assert made == api and type(made) is SpanContext
        assert made.is_valid == api.is_valid and made.span_id == span_id
    span = trace.NonRecordingSpan(_span_context(7, 9, TraceFlags(1), state))
    base = trace.set_span_in_context(trace.INVALID_SPAN)
    assert with_span(span, base) == trace.set_span_in_context(span, base)
    token = attach(with_span(span))
    assert trace.get_current_span() is span and current_context() == with_span(span)
    detach(token)
    assert trace.get_current_span() is not span
    detach(token)  # used twice: logged, as the API does, not raised


def test_a_child_of_a_lean_span_is_the_sdks_child() -> None:
    provider, exporter = recording_provider()
    tracer = service_tracer(provider, "t")
    assert isinstance(tracer, LeanTracer)
    parent = tracer.start_span("parent")
    context = trace.set_span_in_context(parent)
    fast = tracer.start_child("fast", parent, context, {"a": 1})
    slow = tracer.start_span("slow", context, attributes={"a": 1})
    for span in (fast, slow):
        span.end()
    parent.end()
    got = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("fast", "slow"):
        span = got[name]
        assert span.parent == parent.get_span_context()
        assert span.context.trace_id == parent.get_span_context().trace_id
        assert span.context.trace_flags == parent.get_span_context().trace_flags
        assert span.kind is SpanKind.INTERNAL and dict(span.attributes or {}) == {"a": 1}


def test_a_spans_context_is_made_when_first_read_then_kept() -> None:
    tracer = service_tracer(TracerProvider(), "t")  # no processor reads a context
    assert isinstance(tracer, LeanTracer)
    root = tracer.start_span("root")
    child = tracer.start_child("child", root, None, {})
    assert "_context" not in vars(root) and "_context" not in vars(child)
    made = child.get_span_context()
    assert made is child.get_span_context() is child.context
    assert type(made) is SpanContext and made.is_valid and not made.is_remote
    assert made.trace_id == root.get_span_context().trace_id
    assert made.trace_flags == root.get_span_context().trace_flags
    assert made.span_id != root.get_span_context().span_id
    assert child.parent == root.get_span_context() and root.parent is None


def test_a_processor_added_later_hears_the_spans_from_then_on() -> None:
    provider = TracerProvider()
    tracer = service_tracer(provider, "t")
    before = tracer.start_span("before")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    after = tracer.start_span("after", trace.set_span_in_context(before))
    child = tracer.start_child("child", after, trace.set_span_in_context(after), {})
    for span in (child, after, before):
        span.end()
    # Ended after the processor came: all three are exported (as the SDK's spans would be).
    assert names(exporter.get_finished_spans()) == ["after", "before", "child"]


async def test_exported_spans_encode_for_otlp_and_print_as_json() -> None:
    provider, exporter = recording_provider()
    server, port = await serve(tracer_provider=provider)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            t = Traced(server, port, channel)
            t.exporter = exporter
            resp = await t.stub.RunWorkflow(req("current_span", _wait=True))
            assert resp.run.status == pb.RUN_STATUS_SUCCEEDED
            [step] = await t.spans("workflow.step look", 1)
            await t.spans(RPC, 1)
    finally:
        await server.stop(0)
    spans = exporter.get_finished_spans()
    assert names(spans) == sorted([RPC, "workflow.run current_span", "workflow.step look"])

    # The step's own code annotated its span: valid values kept, invalid ones dropped.
    attributes = step.attributes or {}
    assert attributes["app.kept"] == ("a", "b")
    assert "app.dropped" not in attributes
    assert [(e.name, dict(e.attributes or {})) for e in step.events] == [("looked", {"app.n": 1})]

    request = encode_spans(spans)
    [resource_spans] = request.resource_spans
    [scope_spans] = resource_spans.scope_spans
    assert scope_spans.scope.name == "workflow-service"
    encoded = {s.name: s for s in scope_spans.spans}
    rpc = encoded[RPC]
    assert rpc.kind == SpanKind.SERVER.value + 1  # OTLP numbers kinds from 1
    run = encoded["workflow.run current_span"]
    assert run.parent_span_id == rpc.span_id
    assert encoded["workflow.step look"].parent_span_id == run.span_id
    assert all(s.end_time_unix_nano >= s.start_time_unix_nano > 0 for s in encoded.values())

    printed = json.loads(step.to_json())
    assert printed["name"] == "workflow.step look"
    assert printed["attributes"]["workflow.step"] == "look"
    provider.shutdown()


@pytest.mark.parametrize(
    ("sampler", "flags", "recorded"),
    [
        (ParentBased(ALWAYS_OFF), "01", True),
        (ParentBased(ALWAYS_OFF), "00", False),
        (ParentBased(ALWAYS_OFF), None, False),
        (None, "01", True),  # the SDK's default sampler, ParentBased(ALWAYS_ON)
        (None, "00", False),
        (None, None, True),
        # OTEL_TRACES_SAMPLER=parentbased_traceidratio: the caller's decision, else the ratio
        (ParentBased(TraceIdRatioBased(0.0)), "01", True),
        (ParentBased(TraceIdRatioBased(1.0)), "00", False),
        (ParentBased(TraceIdRatioBased(1.0)), None, True),
        (ParentBased(TraceIdRatioBased(0.0)), None, False),
    ],
)
async def test_spans_follow_the_providers_sampler(
    sampler: Sampler | None, flags: str | None, recorded: bool
) -> None:
    """Whole traces are recorded or not, as the sampler decides for the caller's trace
    (``flags``: its traceparent's, None: no traceparent); the calls work either way."""
    provider, exporter = recording_provider(sampler)
    server, port = await serve(tracer_provider=provider)
    trace_id = secrets.randbits(128) | 1
    metadata = None
    if flags is not None:
        metadata = (("traceparent", f"00-{trace_id:032x}-{secrets.randbits(64) | 1:016x}-{flags}"),)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            t = Traced(server, port, channel)
            t.exporter = exporter
            for _ in range(3):
                resp = await t.stub.RunWorkflow(
                    req("flaky", failures=1, _wait=True), metadata=metadata
                )
                assert resp.run.status == pb.RUN_STATUS_SUCCEEDED
            if recorded:
                assert len(await t.spans("workflow.step attempt", 6)) == 6
                assert len(await t.spans(RPC, 3)) == 3
    finally:
        await server.stop(0)
    spans = exporter.get_finished_spans()
    if recorded:
        assert len(spans) == 3 * (1 + 1 + 2)
        if flags is not None:
            assert {s.context.trace_id for s in spans} == {trace_id}
        assert all(s.context.trace_flags.sampled for s in spans)
    else:
        assert spans == ()
    provider.shutdown()


def test_span_api_semantics() -> None:
    provider, exporter = recording_provider()
    tracer = service_tracer(provider, "t")

    with pytest.raises(ValueError), tracer.start_as_current_span("outer") as outer:
        assert trace.get_current_span() is outer
        inner = tracer.start_span("inner")
        inner.set_status(StatusCode.OK)
        inner.set_status(StatusCode.ERROR, "ignored: OK stays")
        for i in range(MAX_ATTRIBUTES + 5):
            inner.set_attribute(f"k{i}", i)
        inner.update_name("renamed")
        inner.end()
        inner.end()  # a second end is ignored
        inner.set_attribute("late", 1)  # so is anything after the end
        raise ValueError("boom")

    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert sorted(spans) == ["outer", "renamed"]
    done = spans["renamed"]
    assert done.parent is not None and done.parent.span_id == outer.get_span_context().span_id
    assert done.status.status_code == StatusCode.OK
    assert len(done.attributes or {}) == MAX_ATTRIBUTES and "late" not in (done.attributes or {})
    failed = spans["outer"]
    assert failed.status.status_code == StatusCode.ERROR
    [event] = failed.events
    attributes = event.attributes or {}
    assert event.name == "exception"
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "boom"
    assert "raise ValueError" in str(attributes["exception.stacktrace"])
    assert len(exporter.get_finished_spans()) == 2
    provider.shutdown()


async def test_served_calls_trace_nothing_with_the_sdk_disabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_SDK_DISABLED makes the SDK hand out no-op tracers: the service uses them."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    provider, exporter = recording_provider()
    assert not isinstance(service_tracer(provider, "workflow-service"), LeanTracer)
    server, port = await serve(tracer_provider=provider)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            s = Served(server, port, channel)
            resp = await s.stub.RunWorkflow(req("echo", message="hi", _wait=True))
            assert resp.run.result.string_value == "hi"
    finally:
        await server.stop(0)
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_remote_parent_keeps_the_callers_trace_and_flags() -> None:
    provider, exporter = recording_provider()
    tracer = service_tracer(provider, "t")
    trace_id, span_id, metadata = traceparent()
    parent = propagate.extract(dict(metadata))
    span = tracer.start_span("rpc", context=parent, kind=SpanKind.SERVER)
    ctx = span.get_span_context()
    assert ctx.trace_id == trace_id and ctx.trace_flags.sampled and not ctx.is_remote
    span.end()
    [done] = exporter.get_finished_spans()
    assert done.parent is not None and done.parent.span_id == span_id and done.parent.is_remote
    provider.shutdown()


def test_children_of_an_unsampled_local_span_are_unsampled_without_asking() -> None:
    asked: list[str] = []

    class Counting(ParentBased):
        def should_sample(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            asked.append(str(args[2]))  # the span's name
            return super().should_sample(*args, **kwargs)  # type: ignore[arg-type]

    provider, exporter = recording_provider(Counting(ALWAYS_OFF))
    tracer = service_tracer(provider, "t")
    root = tracer.start_span("root")  # no parent: the sampler decides (no)
    assert asked == ["root"] and not root.is_recording()
    child = tracer.start_child("child", root, None, {"a": 1})  # type: ignore[attr-defined]
    grandchild = tracer.start_child("grandchild", child, None, {})  # type: ignore[attr-defined]
    assert asked == ["root"]
    up = root.get_span_context()
    for span in (child, grandchild):
        ctx = span.get_span_context()
        assert not span.is_recording() and ctx.is_valid and not ctx.is_remote
        assert ctx.trace_id == up.trace_id and ctx.trace_flags == up.trace_flags
        assert not ctx.trace_flags.sampled and ctx.span_id != up.span_id
    for span in (grandchild, child, root):
        span.end()
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_root_spans_under_a_ratio_sampler_are_sampled_as_the_sdk_samples_them() -> None:
    """The tracer decides ParentBased(TraceIdRatioBased) itself, from each root span's trace
    id, as the SDK's sampler would; a sampler that differs in any part is asked instead."""
    sampler = ParentBased(TraceIdRatioBased(0.25))
    assert _ratio_bound(sampler) == TraceIdRatioBased(0.25).bound
    assert (
        _ratio_bound(ParentBased(TraceIdRatioBased(0.25), remote_parent_sampled=ALWAYS_OFF)) is None
    )
    assert _ratio_bound(ParentBased(ALWAYS_OFF)) is None
    assert _ratio_bound(TraceIdRatioBased(0.25)) is None  # no parent-based part
    assert _ratio_bound(ParentBasedTraceIdRatio(0.25)) == TraceIdRatioBased(0.25).bound
    provider, exporter = recording_provider(sampler)
    tracer = service_tracer(provider, "t")
    sampled = 0
    for _ in range(2000):
        span = tracer.start_span("root", kind=SpanKind.SERVER, attributes={"a": 1})
        ctx = span.get_span_context()
        sdk = sampler.should_sample(None, ctx.trace_id, "root", SpanKind.SERVER, {"a": 1})
        assert ctx.trace_flags.sampled == (sdk.decision is Decision.RECORD_AND_SAMPLE)
        assert span.is_recording() == ctx.trace_flags.sampled and ctx.is_valid
        sampled += ctx.trace_flags.sampled
        span.end()
    assert 400 < sampled < 600  # a quarter of 2,000, give or take
    assert len(exporter.get_finished_spans()) == sampled
    provider.shutdown()


def test_an_unsampled_span_is_the_apis_non_recording_span_its_context_made_on_read() -> None:
    provider, exporter = recording_provider(ParentBased(ALWAYS_OFF))
    tracer = service_tracer(provider, "t")
    root = tracer.start_span("root")
    child = tracer.start_child("child", root, None, {})  # type: ignore[attr-defined]
    for span in (root, child):
        assert isinstance(span, trace.NonRecordingSpan) and not span.is_recording()
        assert "_context" not in vars(span)  # not made yet
    ctx = child.get_span_context()
    assert child.get_span_context() is ctx  # made once, then kept
    assert isinstance(ctx, SpanContext) and ctx.is_valid and not ctx.trace_flags.sampled
    assert ctx.trace_id == root.get_span_context().trace_id
    assert ctx.span_id != root.get_span_context().span_id
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=with_span(child))
    flags = int(ctx.trace_flags)  # not sampled; the random-id flag where the SDK has it
    assert carrier["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{flags:02x}"
    child.end()
    root.end()
    assert exporter.get_finished_spans() == ()
    provider.shutdown()
