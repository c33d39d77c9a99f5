"""Events: pydantic models that steps consume and emit, serialisable with their type name."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import EventValidationError, UnknownEventTypeError

# Every Event subclass, by "module.QualName" and by bare class name (which may be ambiguous).
_BY_KEY: dict[str, type[Event]] = {}
_BY_NAME: dict[str, list[type[Event]]] = {}


def _register(cls: type[Event]) -> None:
    # pydantic builds parametrised generic subclasses on the fly; they are not user types.
    if "[" in cls.__name__:
        return
    _BY_KEY[cls.type_key()] = cls
    same = _BY_NAME.setdefault(cls.__name__, [])
    # Re-defining a class under the same key (tests, reloads) replaces the old one.
    same[:] = [c for c in same if c.type_key() != cls.type_key()]
    same.append(cls)


class Event(BaseModel):
    """Base class of all events. Extra keyword fields are kept, as in llama-index-workflows."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls)

    # Dict-style access, so code written against llama-index-workflows' events keeps working.
    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def keys(self) -> Iterator[str]:
        return iter(self.to_dict())

    @classmethod
    def type_name(cls) -> str:
        """The short name that travels on the wire (the class name)."""
        return cls.__name__

    @classmethod
    def type_key(cls) -> str:
        """The unambiguous name used in checkpoints ("module.QualName")."""
        return f"{cls.__module__}.{cls.__qualname__}"

    def to_json(self) -> str:
        return json.dumps(serialize_event(self), separators=(",", ":"))

    @staticmethod
    def from_json(text: str | bytes, known: Iterable[type[Event]] = ()) -> Event:
        return deserialize_event(json.loads(text), known)


class StartEvent(Event):
    """Starts a run; ``wf.run(**kwargs)`` builds it from the keyword arguments."""


class StopEvent(Event):
    """Ends a run; ``result`` is what awaiting the run's handler returns."""

    result: Any = None

    def __init__(self, result: Any = None, **kwargs: Any) -> None:
        # BaseModel.__init__ does just this, one call and one copy of the fields later:
        # a run builds one StopEvent, often from a one-line step.
        kwargs["result"] = result
        self.__pydantic_validator__.validate_python(kwargs, self_instance=self)


class InputRequiredEvent(Event):
    """Asks the outside world for input; written to the stream when returned or awaited."""


class HumanResponseEvent(Event):
    """Carries the outside world's answer to an :class:`InputRequiredEvent`."""


for _cls in (Event, StartEvent, StopEvent, InputRequiredEvent, HumanResponseEvent):
    _register(_cls)


def serialize_event(ev: Event) -> dict[str, Any]:
    """``{"type": short name, "key": module.QualName, "data": JSON fields}``."""
    cls = type(ev)
    return {"type": cls.__name__, "key": cls.type_key(), "data": ev.model_dump(mode="json")}


def resolve_event_type(name: str, known: Iterable[type[Event]] = ()) -> type[Event]:
    """Find an event class by short name or "module.QualName", preferring ``known`` types."""
    known = list(known)
    for cls in known:
        if name in (cls.__name__, cls.type_key()):
            return cls
    if name in _BY_KEY:
        return _BY_KEY[name]
    candidates = _BY_NAME.get(name, [])
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        keys = ", ".join(c.type_key() for c in candidates)
        raise UnknownEventTypeError(f"{name} (ambiguous between {keys})")
    raise UnknownEventTypeError(name, [c.__name__ for c in known] or None)


def build_event(cls: type[Event], data: dict[str, Any]) -> Event:
    """Validate ``data`` against ``cls``; a failure names every bad field."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise EventValidationError(cls.__name__, validation_fields(e)) from e


def validation_fields(e: ValidationError) -> list[tuple[str, str]]:
    """Every problem pydantic found, as ``(dotted field path, message)``."""
    return [(".".join(str(p) for p in err["loc"]) or "(event)", err["msg"]) for err in e.errors()]


def deserialize_event(payload: dict[str, Any], known: Iterable[type[Event]] = ()) -> Event:
    """Rebuild an event written by :func:`serialize_event`."""
    name = payload.get("key") or payload.get("type")
    if not isinstance(name, str):
        raise UnknownEventTypeError(repr(name))
    try:
        cls = resolve_event_type(name, known)
    except UnknownEventTypeError:
        short = payload.get("type")
        if not isinstance(short, str) or short == name:
            raise
        cls = resolve_event_type(short, known)
    data = payload.get("data") or {}
    if not isinstance(data, dict):
        raise EventValidationError(cls.__name__, {"(event)": "data must be an object"})
    return build_event(cls, data)
