"""Loading the workflows a server hosts from ``module:attribute`` specs."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from engine import Workflow


class RegistryError(Exception):
    """A --workflows entry that cannot be loaded; the message says which and why."""


def load_workflows(spec: str) -> dict[str, Workflow]:
    """Resolve ``[name=]module:attribute,...``.

    An attribute may be a Workflow instance or class (registered under ``name``, or the
    attribute's name) or a mapping of names to either.
    """
    found: dict[str, Workflow] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        name, _, target = entry.rpartition("=")
        module_name, sep, attr = target.partition(":")
        if not sep or not module_name or not attr:
            raise RegistryError(f"--workflows entry '{entry}': expected module:attribute")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise RegistryError(f"--workflows entry '{entry}': cannot import: {e}") from e
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise RegistryError(
                f"--workflows entry '{entry}': {module_name} has no {attr}"
            ) from None
        if isinstance(obj, Mapping):
            if name:
                raise RegistryError(f"--workflows entry '{entry}': a mapping takes no name=")
            for key, value in obj.items():
                found[str(key)] = _instance(entry, value)
        else:
            found[name or attr] = _instance(entry, obj)
    if not found:
        raise RegistryError("--workflows names no workflow")
    return found


def _instance(entry: str, obj: object) -> Workflow:
    if isinstance(obj, type) and issubclass(obj, Workflow):
        return obj()
    if isinstance(obj, Workflow):
        return obj
    raise RegistryError(f"--workflows entry '{entry}': {obj!r} is not a Workflow")
