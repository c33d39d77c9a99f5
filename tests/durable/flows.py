"""Workflows served only by the durability tests."""

import asyncio

from engine import StartEvent, StopEvent, Workflow, step


class NapInput(StartEvent):
    seconds: float = 5.0


class ForgetfulWorkflow(Workflow):
    """Not durable: an interrupted run must end FAILED rather than resume."""

    durable = False

    @step
    async def nap(self, ev: NapInput) -> StopEvent:
        await asyncio.sleep(ev.seconds)
        return StopEvent(result="rested")


FLOWS: dict[str, Workflow] = {"forgetful": ForgetfulWorkflow()}
