import asyncio

import pytest

from .helpers import other_tasks


def _engine_tasks() -> list[asyncio.Task[object]]:
    return [t for t in other_tasks() if "Run._invoke" in repr(t.get_coro())]


@pytest.fixture(autouse=True)
async def no_leftover_engine_tasks():
    """Every test must leave no step task of any run behind on the loop."""
    yield
    for _ in range(5):  # let done-callbacks of just-finished tasks run
        if not _engine_tasks():
            return
        await asyncio.sleep(0)
    left = _engine_tasks()
    for task in left:
        task.cancel()
    pytest.fail(f"the test left {len(left)} engine task(s) running: {left!r}")
