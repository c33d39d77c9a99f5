"""A lean tracer for the service's own spans, feeding the SDK's span processors.

The OpenTelemetry SDK's ``Tracer.start_span`` validates every attribute, takes locks, asks
the sampler, builds bounded containers and, at ``end()``, copies the span into a
``ReadableSpan``: about 25 µs per span here, and a traced RunWorkflow makes three. The
service's spans carry attributes it builds itself, so :class:`LeanTracer` skips that work
and keeps what processors and exporters see unchanged: its spans *are* ``ReadableSpan``s
(with the provider's resource and this scope), each handed to the provider's processors
at start and end, like the SDK's own.

Sampling: a span whose parent is a local span follows the parent's decision (what the
SDK's ``ParentBased`` samplers decide); any other span (the RPC span, a resumed run's
root) asks the provider's sampler, unless that is the SDK's default
``ParentBased(ALWAYS_ON)``, whose answer (sample, unless a remote parent was not sampled)
is given here without the call. Attributes set by code running inside a step (the
step span is current there) are checked as the SDK checks them; up to 128 attributes and
128 events are kept per span, the SDK's default limits.

Spans are made and ended on the event loop's thread; they take no locks.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.trace import (
    ConcurrentMultiSpanProcessor,
    Event,
    ReadableSpan,
    SynchronousMultiSpanProcessor,
)
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.span import DEFAULT_TRACE_STATE, INVALID_SPAN_CONTEXT, TraceState
from opentelemetry.util.types import AttributeValue

log = logging.getLogger(__name__)

MAX_ATTRIBUTES = 128
MAX_EVENTS = 128
# W3C trace context level 2: set on traces whose id is random (SDKs that know of it).
_RANDOM_TRACE_ID = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))
_SAMPLED = int(TraceFlags.SAMPLED)
_SAMPLED_AND_RANDOM = _SAMPLED | _RANDOM_TRACE_ID
_FLAGS = [TraceFlags(i) for i in range(_SAMPLED_AND_RANDOM + 1)]  # made once, not per span
_DEFAULT_SAMPLER = ParentBased(ALWAYS_ON).get_description()  # type: ignore[no-untyped-call]
_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT
_PRIMITIVES = (str, bool, int, float)
_PRIMITIVE_TYPES = frozenset(_PRIMITIVES)
_UNSET = Status(StatusCode.UNSET)
_MAX_SPAN_ID = 2**64 - 1
_MAX_TRACE_ID = 2**128 - 1
_NO_PARENT = INVALID_SPAN_CONTEXT
_now = time.time_ns
_getrandbits = random.getrandbits  # what the SDK's RandomIdGenerator draws from
_INTERNAL = SpanKind.INTERNAL
_new_tuple = tuple.__new__
_new_object = object.__new__
# A SpanContext is a tuple: (trace_id, span_id, is_remote, trace_flags, trace_state,
# is_valid). Its fields are read by index on the hot paths: each named field is a property.
_TRACE_ID: Final = 0
_IS_REMOTE: Final = 2
_TRACE_FLAGS: Final = 3
_TRACE_STATE: Final = 4
_IS_VALID: Final = 5
# A LeanSpan's ``_trace``: (trace_id, trace_flags, trace_state), shared by a root span and
# the children made from it.
_FLAGS_AT: Final = 1


# The API's context functions without their indirections, when the runtime context is the
# default, a ContextVar (OTEL_PYTHON_CONTEXT can name another).
_RUNTIME = otel_context._RUNTIME_CONTEXT
if type(_RUNTIME) is ContextVarsRuntimeContext:
    _CURRENT = _RUNTIME._current_context
    current_context: Callable[[], Context] = _CURRENT.get
    attach: Callable[[Context], object] = _CURRENT.set
    _reset: Callable[[Any], None] = _CURRENT.reset
else:  # pragma: no cover - another runtime context
    current_context, attach, _reset = (
        otel_context.get_current,
        otel_context.attach,
        _RUNTIME.detach,
    )


def detach(token: object) -> None:
    """Restore the context ``attach`` replaced (logged, not raised, when ``token`` is not
    this context's: what the API does)."""
    try:
        _reset(token)
    except Exception:
        log.exception("failed to detach an OpenTelemetry context")


def with_span(span: trace.Span, context: Context | None = None) -> Context:
    """``context`` (the current one when None) with ``span`` as its current span: the
    API's ``set_span_in_context``."""
    return Context({**(current_context() if context is None else context), _SPAN_KEY: span})


def _span_context(trace_id: int, span_id: int, flags: TraceFlags, state: Any) -> SpanContext:
    """A local ``SpanContext``: the tuple the API's constructor builds, made directly
    (the constructor's defaulting of each argument costs a call and more)."""
    valid = 0 < trace_id <= _MAX_TRACE_ID and 0 < span_id <= _MAX_SPAN_ID
    return _new_tuple(SpanContext, (trace_id, span_id, False, flags, state, valid))


def service_tracer(provider: trace.TracerProvider, name: str) -> trace.Tracer:
    """A :class:`LeanTracer` on an SDK provider; any other provider's own tracer."""
    tracer = provider.get_tracer(name)
    if isinstance(provider, SdkTracerProvider) and isinstance(tracer, SdkTracer):
        return LeanTracer(tracer, name)
    return tracer  # not the SDK (or the SDK disabled): its own spans


class LeanTracer(trace.Tracer):
    """Starts :class:`LeanSpan`s with an SDK tracer's processors, sampler, id generator
    and resource."""

    def __init__(self, sdk: SdkTracer, name: str) -> None:
        self._processor = sdk.span_processor
        self._sampler = sdk.sampler
        self._ids = sdk.id_generator
        self._trace_id = self._ids.generate_trace_id
        self._span_id = self._ids.generate_span_id
        self._on_start = self._processor.on_start
        # The SDK's fan-out to the provider's processors: with none added yet, nobody is
        # told of a span (processors added later are, from then on).
        fanout = (SynchronousMultiSpanProcessor, ConcurrentMultiSpanProcessor)
        self._fanout = self._processor if isinstance(self._processor, fanout) else None
        self._resource = sdk.resource
        self._scope = InstrumentationScope(name)
        is_random = getattr(self._ids, "is_trace_id_random", None)
        self._root_random = _RANDOM_TRACE_ID if is_random is not None and is_random() else 0
        # The SDK's default generator: ids drawn here, without its method calls. Its ids
        # are never 0, so the span contexts made from them are valid.
        self._random_ids = type(self._ids) is RandomIdGenerator
        # The SDK's default sampler decides from the parent alone, and its ratio sampler
        # (OTEL_TRACES_SAMPLER=parentbased_traceidratio) a root span from its trace id: both
        # decided here, unasked.
        description = self._sampler.get_description()
        self._default_sampler = description == _DEFAULT_SAMPLER
        self._root_bound = _ratio_bound(self._sampler)
        self._parent_decides = self._default_sampler or self._root_bound is not None

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        found = (current_context() if context is None else context).get(_SPAN_KEY)
        if found is None:  # a root span
            parent, valid = _NO_PARENT, False
        else:
            # Not a span: what the API reads as none.
            parent = found.get_span_context() if isinstance(found, trace.Span) else _NO_PARENT
            valid = parent.is_valid
        state = DEFAULT_TRACE_STATE
        kept = attributes  # copied: the span adds to its own
        if valid and (self._parent_decides or not parent[_IS_REMOTE]):
            # The parent's decision stands (ParentBased: a local parent's always does).
            trace_id, state = parent[_TRACE_ID], parent[_TRACE_STATE]
            bits = parent[_TRACE_FLAGS] & _SAMPLED_AND_RANDOM
            recording = bits & _SAMPLED
        elif self._default_sampler:  # a root span, sampled
            trace_id = (self._random_ids and _getrandbits(128)) or self._trace_id()
            bits = _SAMPLED | self._root_random
            recording = True
        elif self._root_bound is not None:  # a root span, sampled by its trace id
            trace_id = (self._random_ids and _getrandbits(128)) or self._trace_id()
            recording = trace_id & _TRACE_ID_LIMIT < self._root_bound
            bits = (_SAMPLED if recording else 0) | self._root_random
        else:
            if valid:
                trace_id, random = parent.trace_id, parent.trace_flags & _RANDOM_TRACE_ID
            else:
                trace_id, random = self._trace_id(), self._root_random
            result = self._sampler.should_sample(
                context, trace_id, name, kind, attributes, links or ()
            )
            sampled = result.decision is Decision.RECORD_AND_SAMPLE
            bits = (_SAMPLED if sampled else 0) | random
            state = result.trace_state or DEFAULT_TRACE_STATE
            kept = result.attributes  # the sampler's say on them
            recording = result.decision is not Decision.DROP
        span_id = (self._random_ids and _getrandbits(64)) or self._span_id()
        if not recording:
            unsampled: UnsampledSpan = _new_object(UnsampledSpan)
            unsampled._trace = (trace_id, _FLAGS[bits], state)
            unsampled._span_id = span_id
            return unsampled
        span: LeanSpan = _new_object(LeanSpan)  # its fields set here: see LeanSpan
        span._name = name
        span._trace = (trace_id, _FLAGS[bits], state)
        span._span_id = span_id
        span._parent = parent if valid else None
        span._kind = kind
        span._resource = self._resource
        span._instrumentation_scope = self._scope
        span._attributes = dict(kept) if kept else {}
        span._start_time = start_time or _now()
        span._tracer = self
        if links:
            span._links = tuple(links)
        if not record_exception:
            span._record_exception = False
        if not set_status_on_exception:
            span._set_status_on_exception = False
        if self._fanout is None or self._fanout._span_processors:
            self._on_start(span, parent_context=context)  # type: ignore[arg-type]
        return span

    def start_child(
        self,
        name: str,
        parent: object,
        context: Context | None,
        attributes: dict[str, AttributeValue],
    ) -> trace.Span:
        """``start_span(name, context, attributes=attributes)`` where ``parent`` is
        ``context``'s span (None: the current context, whose span ``parent`` may be, or
        need not be when it is one of this tracer's spans). A child of one of this tracer's
        sampled spans takes the parent's trace id, flags and state without a context lookup,
        and ``attributes`` as they are; a child of an unsampled local span is unsampled
        too, as in :meth:`start_span`; any other parent goes the long way."""
        if type(parent) is LeanSpan:
            shared = parent._trace
            if shared[_FLAGS_AT] & _SAMPLED:
                span: LeanSpan = _new_object(LeanSpan)  # as in start_span
                span._name = name
                span._trace = shared
                span._span_id = (self._random_ids and _getrandbits(64)) or self._span_id()
                span._up = parent
                span._kind = _INTERNAL
                span._resource = self._resource
                span._instrumentation_scope = self._scope
                span._attributes = attributes
                span._start_time = _now()
                span._tracer = self
                if self._fanout is None or self._fanout._span_processors:
                    # Processors are told the parent's context, made only for them.
                    told = with_span(parent) if context is None else context
                    self._on_start(span, parent_context=told)  # type: ignore[arg-type]
                return span
        elif type(parent) is UnsampledSpan:
            # One of this tracer's unsampled spans (local, valid): its decision stands.
            unsampled: UnsampledSpan = _new_object(UnsampledSpan)
            unsampled._trace = parent._trace
            unsampled._span_id = (self._random_ids and _getrandbits(64)) or self._span_id()
            return unsampled
        elif type(parent) is trace.NonRecordingSpan:
            up = parent._context
            if up[_IS_VALID] and not up[_IS_REMOTE] and not up[_TRACE_FLAGS] & _SAMPLED:
                # An unsampled local parent's decision stands: a span for propagation only.
                span_id = self._span_id()
                return trace.NonRecordingSpan(
                    _span_context(up[_TRACE_ID], span_id, up[_TRACE_FLAGS], up[_TRACE_STATE])
                )
        if context is None and isinstance(parent, trace.Span):
            context = with_span(parent)
        return self.start_span(name, context, attributes=attributes)

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # the API names its own CM type
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception,
        )  # fmt: skip
        with trace.use_span(span, end_on_exit, record_exception, set_status_on_exception):
            yield span


class LeanSpan(trace.Span, ReadableSpan):
    """A recording span that is its own ``ReadableSpan``: processors get it at ``end()``
    as it is, since nothing changes it afterwards."""

    _instrumentation_info = None
    _events: Sequence[Event] = ()
    _links: Sequence[Link] = ()
    _status = _UNSET
    _end_time: int | None = None
    _record_exception = True
    _set_status_on_exception = True

    # ReadableSpan's fields are set by LeanTracer's start_span and start_child, directly on a
    # new instance: an __init__ taking them would cost a call with ten arguments per span,
    # and ReadableSpan's own takes a dozen keywords. Those every span starts with are the
    # class's (above); these are the ones set on every span.
    _tracer: LeanTracer
    _trace: tuple[int, TraceFlags, TraceState]  # (trace_id, flags, state): see _FLAGS_AT
    _span_id: int
    _up: LeanSpan  # a child's parent (a root span's _parent is set instead)

    def __init__(self) -> None:
        raise TypeError("LeanSpans are started by a LeanTracer")

    # ---- trace.Span ------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value]

    def is_recording(self) -> bool:
        return self._end_time is None

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return  # ended already (the SDK warns and ignores it too)
        self._end_time = end_time or _now()
        fanout = self._tracer._fanout
        if fanout is None or fanout._span_processors:
            self._tracer._processor.on_end(self)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if self._end_time is not None:
            return
        attributes: dict[str, AttributeValue] = self._attributes  # type: ignore[assignment]
        if not (type(value) in _PRIMITIVE_TYPES or _valid(value)) or not (key and type(key) is str):
            log.warning("span attribute %r dropped: invalid key or value %r", key, value)
            return
        if key in attributes or len(attributes) < MAX_ATTRIBUTES:
            attributes[key] = tuple(value) if isinstance(value, list) else value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        timestamp: int | None = None,
    ) -> None:
        if self._end_time is not None or len(self._events) >= MAX_EVENTS:
            return
        kept = {k: v for k, v in (attributes or {}).items() if isinstance(k, str) and _valid(v)}
        self._events = (*self._events, Event(name, kept, timestamp or _now()))

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:
        if self._end_time is None and context.is_valid:
            self._links = (*self._links, Link(context, attributes))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # Once OK, a span stays OK (as the SDK has it).
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, AttributeValue] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        cls = type(exception)
        module = cls.__module__
        data: dict[str, AttributeValue] = {
            "exception.type": cls.__qualname__
            if module in (None, "builtins")
            else f"{module}.{cls.__qualname__}",
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        data.update(attributes or {})
        self.add_event("exception", data, timestamp)

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(StatusCode.ERROR, f"{exc_type.__name__}: {exc_val}")
        super().__exit__(exc_type, exc_val, exc_tb)

    def __repr__(self) -> str:
        ctx = self.get_span_context()
        ids = f"trace_id=0x{ctx.trace_id:032x}, span_id=0x{ctx.span_id:016x}"
        return f"LeanSpan(name={self._name!r}, {ids})"


class _MadeOnRead:
    """A span field made from its other fields the first time it is read, then kept in the
    span's own ``__dict__`` (which takes precedence over this, a non-data descriptor).
    Making a span's ``SpanContext`` (a tuple subclass) is about a quarter of the cost of
    starting a span, and with no processor or exporter nobody asks for it."""

    def __init__(self, field: str, make: Callable[[LeanSpan], SpanContext | None]) -> None:
        self._field = field
        self._make = make

    def __get__(self, span: LeanSpan | None, owner: type | None = None) -> Any:
        if span is None:
            return self
        made = span.__dict__[self._field] = self._make(span)
        return made


class UnsampledSpan(trace.NonRecordingSpan):
    """A span this tracer sampled out: the API's ``NonRecordingSpan``, there to carry the
    trace's context to child spans and outgoing calls, its ``SpanContext`` made from
    ``_trace`` and ``_span_id`` (as a :class:`LeanSpan`'s) only if someone reads it."""

    _trace: tuple[int, TraceFlags, TraceState]
    _span_id: int

    def __init__(self) -> None:
        raise TypeError("UnsampledSpans are started by a LeanTracer")


def _own_context(span: LeanSpan | UnsampledSpan) -> SpanContext:
    trace_id, flags, state = span._trace
    return _span_context(trace_id, span._span_id, flags, state)


def _parent_context(span: LeanSpan) -> SpanContext | None:
    return span._up.get_span_context()  # a root span has its _parent set when started


LeanSpan._context = _MadeOnRead("_context", _own_context)  # type: ignore[assignment]
LeanSpan._parent = _MadeOnRead("_parent", _parent_context)  # type: ignore[assignment]
UnsampledSpan._context = _MadeOnRead("_context", _own_context)  # type: ignore[assignment]


def _ratio_bound(sampler: Sampler) -> int | None:
    """The bound below which ``ParentBased(TraceIdRatioBased(rate))``, with its default
    samplers for parents, samples a root span (its trace id's low 64 bits); None for any
    other sampler, which is asked for every root span. ``ParentBasedTraceIdRatio`` is what
    ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` makes."""
    root = getattr(sampler, "_root", None)
    kinds = (ParentBased, ParentBasedTraceIdRatio)
    if type(sampler) not in kinds or type(root) is not TraceIdRatioBased:
        return None
    plain = ParentBased(TraceIdRatioBased(root.rate))
    if sampler.get_description() != plain.get_description():  # type: ignore[no-untyped-call]
        return None  # other samplers for remote or local parents
    return int(root.bound)


def _valid(value: object) -> bool:
    """An attribute value OpenTelemetry accepts: a primitive, or a sequence of one type of
    primitive (None allowed in it)."""
    if isinstance(value, _PRIMITIVES):
        return True
    if not isinstance(value, (list, tuple)):
        return False
    kinds = {type(v) for v in value if v is not None}
    return len(kinds) <= 1 and all(issubclass(k, _PRIMITIVES) for k in kinds)
