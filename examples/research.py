import asyncio

from engine import Context, Event, StartEvent, StopEvent, Workflow, step

ANGLES = ("history", "current state", "open problems", "applications")


class ResearchInput(StartEvent):
    topic: str


class Query(Event):
    topic: str
    question: str


class Finding(Event):
    question: str
    text: str


class Progress(Event):
    message: str


class ResearchWorkflow(Workflow):
    """Plans sub-queries on a topic, searches them four at a time, and sums them up."""

    search_seconds = 0.5  # stands for an I/O call per query

    @step
    async def plan(self, ctx: Context, ev: ResearchInput) -> Query | None:
        questions = [f"{ev.topic}: {angle}" for angle in ANGLES]
        await ctx.store.set("expected", len(questions))
        await ctx.store.set("topic", ev.topic)
        ctx.write_event_to_stream(Progress(message=f"planned {len(questions)} queries"))
        for q in questions:
            ctx.send_event(Query(topic=ev.topic, question=q))
        return None

    @step(num_workers=4)
    async def search(self, ctx: Context, ev: Query) -> Finding:
        ctx.write_event_to_stream(Progress(message=f"searching {ev.question!r}"))
        await asyncio.sleep(self.search_seconds)
        return Finding(question=ev.question, text=f"notes on {ev.question}")

    @step
    async def combine(self, ctx: Context, ev: Finding) -> StopEvent | None:
        ctx.write_event_to_stream(Progress(message=f"found {ev.question!r}"))
        found = ctx.collect_events(ev, [Finding] * await ctx.store.get("expected"))
        if found is None:
            return None
        summary = "; ".join(f.text for f in found if isinstance(f, Finding))
        return StopEvent(result={"topic": await ctx.store.get("topic"), "summary": summary})
