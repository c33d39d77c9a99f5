"""Spec 1: events are pydantic v2 models, typed start/stop subclasses, JSON round trips."""

import json

import pytest
from pydantic import BaseModel, Field, ValidationError

from engine import (
    Event,
    EventValidationError,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    UnknownEventTypeError,
    Workflow,
    deserialize_event,
    serialize_event,
    step,
)
from engine.events import build_event


class Address(BaseModel):
    street: str
    tags: list[str] = []


class Person(BaseModel):
    name: str
    age: int
    address: Address
    friends: list["Person"] = []


class NestedEvent(Event):
    person: Person
    scores: dict[str, list[int]]
    maybe: Address | None = None
    pairs: list[tuple[str, int]] = Field(default_factory=list)


class TypedStart(StartEvent):
    x: int
    label: str = "none"


class TypedStop(StopEvent):
    doubled: int
    label: str


class TypedIOWorkflow(Workflow):
    @step
    async def compute(self, ev: TypedStart) -> TypedStop:
        assert isinstance(ev, TypedStart)
        return TypedStop(doubled=ev.x * 2, label=ev.label)


class EchoWorkflow(Workflow):
    @step
    async def echo(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result={"a": ev.a, "b": ev.get("b"), "missing": ev.get("zzz", "dflt")})


def sample_nested() -> NestedEvent:
    bob = Person(name="bob", age=40, address=Address(street="Elm", tags=["home"]))
    alice = Person(
        name="alice", age=30, address=Address(street="Oak", tags=["a", "b"]), friends=[bob]
    )
    return NestedEvent(
        person=alice,
        scores={"math": [1, 2, 3], "art": []},
        maybe=Address(street="Pine"),
        pairs=[("x", 1), ("y", 2)],
    )


# ---- pydantic models and extra fields ------------------------------------------------------


def test_events_are_pydantic_models() -> None:
    ev = sample_nested()
    assert isinstance(ev, BaseModel)
    assert isinstance(ev.person.address, Address)
    assert ev.model_dump()["person"]["friends"][0]["name"] == "bob"
    with pytest.raises(ValidationError):
        NestedEvent(person={"name": "x"}, scores={})


def test_start_event_accepts_extra_fields() -> None:
    ev = StartEvent(topic="cats", count=3, nested={"a": [1, 2]})
    assert ev.topic == "cats"
    assert ev.count == 3
    assert ev.nested == {"a": [1, 2]}
    assert ev.model_dump() == {"topic": "cats", "count": 3, "nested": {"a": [1, 2]}}
    # Dict-style access kept from llama-index-workflows.
    assert ev["topic"] == "cats"
    assert ev.get("missing", 7) == 7
    assert "count" in ev


def test_stop_event_result_and_extra_fields() -> None:
    assert StopEvent().result is None
    assert StopEvent("positional").result == "positional"
    ev = StopEvent(result={"k": [1, 2]}, reason="done", score=0.5)
    assert ev.result == {"k": [1, 2]}
    assert ev.reason == "done"
    assert ev.score == 0.5
    assert StopEvent(result=1).model_fields_set == {"result"}


class ScoredStop(StopEvent):
    score: int


def test_stop_event_subclass_fields_are_validated() -> None:
    assert ScoredStop("r", score="2").score == 2  # type: ignore[arg-type]  # coerced
    with pytest.raises(ValidationError):
        ScoredStop(result="r", score="many")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ScoredStop(result="r")  # type: ignore[call-arg]


async def test_run_kwargs_become_start_event_fields() -> None:
    result = await EchoWorkflow().run(a=1, b=[2, 3])
    assert result == {"a": 1, "b": [2, 3], "missing": "dflt"}


# ---- typed start and stop events -----------------------------------------------------------


def test_typed_start_event_type_is_picked_up() -> None:
    wf = TypedIOWorkflow()
    assert wf.start_event_type is TypedStart
    assert set(wf.input_schema()["properties"]) >= {"x", "label"}


async def test_typed_start_event_built_from_run_kwargs_and_typed_stop_returned() -> None:
    result = await TypedIOWorkflow().run(x=21, label="hi")
    # A StopEvent subclass is returned as the event itself, not its `result`.
    assert isinstance(result, TypedStop)
    assert result.doubled == 42
    assert result.label == "hi"


async def test_typed_start_event_coerces_valid_input() -> None:
    result = await TypedIOWorkflow().run(x="5")
    assert result.doubled == 10
    assert result.label == "none"


async def test_run_accepts_a_prebuilt_start_event() -> None:
    result = await TypedIOWorkflow().run(start_event=TypedStart(x=4, label="pre"))
    assert (result.doubled, result.label) == (8, "pre")


def test_bad_start_input_raises_event_validation_error_naming_the_field() -> None:
    wf = TypedIOWorkflow()
    with pytest.raises(EventValidationError) as info:
        wf.run(x="not a number")
    err = info.value
    assert "x" in err.fields
    assert "TypedStart" in str(err)
    assert "x:" in str(err)
    assert isinstance(err, ValueError)


class _Nested(BaseModel):
    name: str
    size: int = Field(ge=1)


class _ManyFields(Event):
    count: int = Field(le=10)
    items: list[_Nested]


def test_event_validation_error_lists_every_violation_with_dotted_paths() -> None:
    data = {"count": 11, "items": [{"name": "ok", "size": 1}, {"name": 3, "size": 0}]}
    with pytest.raises(EventValidationError) as info:
        build_event(_ManyFields, data)
    paths = [field for field, _ in info.value.violations]
    assert paths == ["count", "items.1.name", "items.1.size"]
    assert all(message for _, message in info.value.violations)
    assert info.value.fields["count"] == info.value.violations[0][1]


def test_missing_start_input_raises_event_validation_error_naming_the_field() -> None:
    with pytest.raises(EventValidationError) as info:
        TypedIOWorkflow().run(label="only the label")
    assert list(info.value.fields) == ["x"]
    assert "x" in str(info.value)


# ---- serialisation -------------------------------------------------------------------------


def test_serialize_event_carries_type_name_and_json_data() -> None:
    ev = sample_nested()
    payload = serialize_event(ev)
    assert payload["type"] == "NestedEvent"
    assert payload["key"].endswith("test_events.NestedEvent")
    assert payload["data"]["person"]["address"]["street"] == "Oak"
    # The payload is plain JSON.
    assert json.loads(json.dumps(payload)) == payload


def test_nested_event_round_trips_through_serialize_and_deserialize() -> None:
    ev = sample_nested()
    back = deserialize_event(json.loads(json.dumps(serialize_event(ev))))
    assert type(back) is NestedEvent
    assert back == ev
    assert isinstance(back.person.friends[0].address, Address)
    assert back.pairs == [("x", 1), ("y", 2)]


def test_nested_event_round_trips_through_to_json_and_from_json() -> None:
    ev = sample_nested()
    text = ev.to_json()
    assert json.loads(text)["type"] == "NestedEvent"
    back = Event.from_json(text)
    assert type(back) is NestedEvent
    assert back == ev
    assert Event.from_json(text.encode()) == ev


def test_deserialize_by_short_type_name_only() -> None:
    ev = sample_nested()
    payload = {"type": "NestedEvent", "data": serialize_event(ev)["data"]}
    assert deserialize_event(payload) == ev


@pytest.mark.parametrize(
    "ev",
    [
        StartEvent(topic="t", n=[1, {"deep": True}]),
        StopEvent(result={"answer": [1, 2, {"x": None}]}, extra="kept"),
        TypedStart(x=3, label="L", additional="also kept"),
        TypedStop(doubled=2, label="z"),
        InputRequiredEvent(prefix="Approve?"),
        HumanResponseEvent(response="yes", user="alice"),
        Event(anything="goes"),
    ],
    ids=lambda ev: type(ev).__name__,
)
def test_builtin_and_typed_events_round_trip(ev: Event) -> None:
    text = ev.to_json()
    assert json.loads(text)["type"] == type(ev).__name__
    back = Event.from_json(text)
    assert type(back) is type(ev)
    assert back == ev
    assert back.model_dump() == ev.model_dump()


def test_deserialize_unknown_type_raises() -> None:
    with pytest.raises(UnknownEventTypeError, match="NoSuchEventAnywhere"):
        deserialize_event({"type": "NoSuchEventAnywhere", "data": {}})


def test_deserialize_bad_data_raises_event_validation_error_naming_the_field() -> None:
    payload = serialize_event(TypedStart(x=1))
    payload["data"]["x"] = "oops"
    with pytest.raises(EventValidationError) as info:
        deserialize_event(payload)
    assert "x" in info.value.fields
