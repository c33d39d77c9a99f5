"""A test helper: run a workflow, collect what it streamed and what it returned."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .events import Event, StartEvent
from .workflow import Workflow


@dataclass
class WorkflowTestResult:
    result: Any
    collected: list[Event] = field(default_factory=list)

    @property
    def event_types(self) -> Counter[str]:
        return Counter(type(e).__name__ for e in self.collected)


class WorkflowTestRunner:
    """``await WorkflowTestRunner(wf).run(x=1)`` runs to the end and keeps the stream."""

    def __init__(self, workflow: Workflow) -> None:
        self._workflow = workflow

    async def run(self, start_event: StartEvent | None = None, **kwargs: Any) -> WorkflowTestResult:
        handler = self._workflow.run(start_event=start_event, **kwargs)
        collected = [ev async for ev in handler.stream_events()]
        return WorkflowTestResult(result=await handler, collected=collected)
