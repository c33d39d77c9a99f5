from engine import StartEvent, StopEvent, Workflow, step


class EchoInput(StartEvent):
    message: str


class EchoWorkflow(Workflow):
    """Returns the message it is given."""

    @step
    async def echo(self, ev: EchoInput) -> StopEvent:
        return StopEvent(result=ev.message)
