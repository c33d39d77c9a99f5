"""The 3-step linear workflow of bench/service_bench.py, once per library.

``WORKFLOWS`` is what our server loads (``--workflows bench_workflows:WORKFLOWS``, with
``bench/`` on ``PYTHONPATH``); ``llama_workflows()`` builds the same workflow on
``llama-index-workflows`` for ``llama-agents-server``. The step code is identical.
"""

from typing import Any

import engine

LINEAR_RESULT = "done"


def define_linear(api: Any) -> type:
    """StartEvent -> begin -> a -> b -> StopEvent, trivial steps, on one library's API."""

    class AEvent(api.Event):  # type: ignore[misc, name-defined]
        pass

    class BEvent(api.Event):  # type: ignore[misc, name-defined]
        pass

    class Linear(api.Workflow):  # type: ignore[misc, name-defined]
        """Three trivial steps in a line."""

        @api.step
        async def begin(self, ev: api.StartEvent) -> AEvent:  # type: ignore[name-defined]
            return AEvent()

        @api.step
        async def a(self, ev: AEvent) -> BEvent:
            return BEvent()

        @api.step
        async def b(self, ev: BEvent) -> api.StopEvent:  # type: ignore[name-defined]
            return api.StopEvent(result=LINEAR_RESULT)

    return Linear


WORKFLOWS: dict[str, engine.Workflow] = {"linear": define_linear(engine)()}


def llama_workflows() -> dict[str, Any]:
    """The same workflow on llama-index-workflows (imported only by the llama server)."""
    from types import SimpleNamespace

    from workflows import Workflow, step
    from workflows.events import Event, StartEvent, StopEvent

    api = SimpleNamespace(
        Workflow=Workflow, step=step, Event=Event, StartEvent=StartEvent, StopEvent=StopEvent
    )
    # Per-run timeout well above the longest wave (llama-index-workflows' default is 45 s).
    return {"linear": define_linear(api)(timeout=300)}
