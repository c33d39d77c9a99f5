"""Workflows served only by the durability tests."""

import asyncio

from engine import Event, StartEvent, StopEvent, Workflow, step


class NapInput(StartEvent):
    seconds: float = 5.0


class ForgetfulWorkflow(Workflow):
    """Not durable: an interrupted run must end FAILED rather than resume."""

    durable = False

    @step
    async def nap(self, ev: NapInput) -> StopEvent:
        await asyncio.sleep(ev.seconds)
        return StopEvent(result="rested")


class RelayInput(StartEvent):
    first_seconds: float
    second_seconds: float


class Baton(Event):
    seconds: float


class RelayWorkflow(Workflow):
    """Two steps in a row, each as long as its input says: a crash during the second shows
    whether the first was checkpointed (it then does not run again)."""

    @step
    async def first(self, ev: RelayInput) -> Baton:
        await asyncio.sleep(ev.first_seconds)
        return Baton(seconds=ev.second_seconds)

    @step
    async def second(self, ev: Baton) -> StopEvent:
        await asyncio.sleep(ev.seconds)
        return StopEvent(result="arrived")


FLOWS: dict[str, Workflow] = {"forgetful": ForgetfulWorkflow(), "relay": RelayWorkflow()}
