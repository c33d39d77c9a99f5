"""Spec 7: ctx.store get/set, defaults, dotted paths, and edit() under concurrency."""

import asyncio

import pytest

from engine import (
    Context,
    Event,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    step,
)

from .helpers import outcome


class BumpEvent(Event):
    pass


class Bumped(Event):
    pass


class StoreBasicsWorkflow(Workflow):
    @step
    async def poke(self, ctx: Context, ev: StartEvent) -> StopEvent:
        store = ctx.store
        report: dict[str, object] = {}
        report["default"] = await store.get("missing", default="fallback")
        report["default_none"] = await store.get("missing", default=None)
        try:
            await store.get("missing")
        except KeyError as e:
            report["keyerror"] = str(e)
        await store.set("plain", 1)
        await store.set("user.profile.name", "ada")
        await store.set("user.profile.age", 36)
        report["plain"] = await store.get("plain")
        report["name"] = await store.get("user.profile.name")
        report["profile"] = await store.get("user.profile")
        report["user"] = await store.get("user")
        report["deep_default"] = await store.get("user.profile.email", default="none")
        try:
            await store.get("user.nothing.here")
        except KeyError:
            report["deep_keyerror"] = True
        # Setting under a non-dict value replaces it with a dict.
        await store.set("plain.inner", 2)
        report["plain_after"] = await store.get("plain")
        return StopEvent(result=report)


class CounterWorkflow(Workflow):
    """Fifty events, eight workers: each increments a counter with a yield in between."""

    EVENTS = 50

    @step
    async def spray(self, ctx: Context, ev: StartEvent) -> BumpEvent | None:
        await ctx.store.set("count", 0)
        for _ in range(self.EVENTS):
            ctx.send_event(BumpEvent())
        return None

    @step(num_workers=8)
    async def bump(self, ctx: Context, ev: BumpEvent) -> Bumped:
        async with ctx.store.edit() as state:
            current = state["count"]
            await asyncio.sleep(0)
            state["count"] = current + 1
        return Bumped()

    @step
    async def done(self, ctx: Context, ev: Bumped) -> StopEvent | None:
        if ctx.collect_events(ev, [Bumped] * self.EVENTS) is None:
            return None
        return StopEvent(result=await ctx.store.get("count"))


class UnsafeCounterWorkflow(CounterWorkflow):
    @step(num_workers=8)
    async def bump(self, ctx: Context, ev: BumpEvent) -> Bumped:
        current = await ctx.store.get("count")
        await asyncio.sleep(0)
        await ctx.store.set("count", current + 1)
        return Bumped()


class RollbackWorkflow(Workflow):
    @step
    async def broken_edit(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("kept", "before")
        async with ctx.store.edit() as state:
            state["kept"] = "changed"
            state["added"] = True
            raise RuntimeError("abandon the edit")
        return StopEvent()  # pragma: no cover


class ReadInsideEditWorkflow(Workflow):
    @step
    async def read_while_editing(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("limit", 3)
        async with ctx.store.edit() as state:
            limit = await ctx.store.get("limit")
            state["count"] = min(state.get("count", 0) + 5, limit)
        return StopEvent(result=await ctx.store.get("count"))


async def test_get_set_defaults_and_dotted_paths() -> None:
    report = await StoreBasicsWorkflow().run()
    assert report["default"] == "fallback"
    assert report["default_none"] is None
    assert "missing" in report["keyerror"]
    assert report["plain"] == 1
    assert report["name"] == "ada"
    assert report["profile"] == {"name": "ada", "age": 36}
    assert report["user"] == {"profile": {"name": "ada", "age": 36}}
    assert report["deep_default"] == "none"
    assert report["deep_keyerror"] is True
    assert report["plain_after"] == {"inner": 2}


async def test_store_is_readable_from_the_handler_after_the_run() -> None:
    handler = StoreBasicsWorkflow().run()
    await handler
    assert await handler.ctx.store.get("user.profile.age") == 36
    with pytest.raises(KeyError):
        await handler.ctx.store.get("nope")


async def test_edit_is_safe_with_many_workers() -> None:
    assert await asyncio.wait_for(CounterWorkflow().run(), 2) == 50


async def test_without_edit_the_same_pattern_loses_updates() -> None:
    # The contrast that shows the edit() test is meaningful.
    assert await asyncio.wait_for(UnsafeCounterWorkflow().run(), 2) < 50


async def test_edit_block_that_raises_restores_the_state() -> None:
    handler = RollbackWorkflow().run()
    err = await outcome(handler)
    assert isinstance(err, StepFailedError)
    assert await handler.ctx.store.get("kept") == "before"
    assert await handler.ctx.store.get("added", default="absent") == "absent"


async def test_each_run_has_its_own_store() -> None:
    wf = CounterWorkflow()
    handlers = [wf.run() for _ in range(5)]
    assert await asyncio.wait_for(asyncio.gather(*handlers), 2) == [50] * 5
    assert len({id(h.ctx.store) for h in handlers}) == 5


async def test_reading_the_store_inside_an_edit_block_does_not_deadlock() -> None:
    handler = ReadInsideEditWorkflow(timeout=0.3).run()
    assert await asyncio.wait_for(handler, 2) == 3
