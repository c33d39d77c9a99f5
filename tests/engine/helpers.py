"""Shared helpers for the engine tests: a recording listener and small async utilities."""

import asyncio
from collections.abc import Callable
from typing import Any

from engine import Event, RunListener, RunStatus, WorkflowHandler


class RecordingListener(RunListener):
    """Records every lifecycle call as a tuple whose first item is the method name."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def run_started(self, run: WorkflowHandler, start_event: Event | None) -> None:
        self.calls.append(("run_started", start_event))

    def step_started(
        self, run: WorkflowHandler, step: str, invocation: int, attempt: int, event: Event
    ) -> None:
        self.calls.append(("step_started", step, invocation, attempt, event))

    def step_finished(
        self,
        run: WorkflowHandler,
        step: str,
        invocation: int,
        attempt: int,
        duration: float,
        result: Event | None,
        error: BaseException | None,
    ) -> None:
        self.calls.append(("step_finished", step, invocation, attempt, duration, result, error))

    def event_sent(self, run: WorkflowHandler, event: Event, step: str | None) -> None:
        self.calls.append(("event_sent", event, step))

    def stream_event(
        self, run: WorkflowHandler, event: Event, step: str | None, invocation: int, index: int
    ) -> None:
        self.calls.append(("stream_event", event, step, invocation, index))

    def input_required(self, run: WorkflowHandler, event: Event, step: str | None) -> None:
        self.calls.append(("input_required", event, step))

    def status_changed(self, run: WorkflowHandler, status: RunStatus) -> None:
        self.calls.append(("status_changed", status))

    def run_finished(
        self, run: WorkflowHandler, status: RunStatus, result: Any, error: BaseException | None
    ) -> None:
        self.calls.append(("run_finished", status, result, error))

    def kinds(self, *skip: str) -> list[str]:
        """The method names called, in order, leaving out those in ``skip``."""
        return [c[0] for c in self.calls if c[0] not in skip]

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


def other_tasks() -> set[asyncio.Task[Any]]:
    """Every unfinished task on the loop except the calling one."""
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[arg-type]


async def outcome(handler: WorkflowHandler) -> BaseException:
    """Await a run that is expected to fail and return its error."""
    try:
        result = await handler
    except BaseException as e:  # CancelledError included on purpose
        return e
    raise AssertionError(f"the run succeeded with {result!r}; an error was expected")


async def wait_until(predicate: Callable[[], bool], within: float = 1.0) -> None:
    """Poll ``predicate`` on the loop until it holds; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"condition not met within {within}s")


async def collect_stream(handler: WorkflowHandler) -> list[Event]:
    return [ev async for ev in handler.stream_events()]
