"""The research scenario: three topics researched at once, their events interleaved live.

make run            # in one terminal
make demo           # in another
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from workflow_client import WorkflowClient

TOPICS = ("tides", "volcanoes", "honeybees")


async def research(client: WorkflowClient, topic: str, began: float) -> float:
    handle = client.stream("research", topic=topic)
    async for ev in handle.events():
        if ev.kind in ("STREAM", "RUN_STARTED") or ev.terminal:
            detail = ev.data.get("message") or ev.data.get("result") or ev.data.get("topic")
            print(
                f"{time.perf_counter() - began:6.2f}s  {topic:<10} #{ev.sequence:<3} "
                f"{ev.kind:<14} {detail}"
            )
    await handle.result()
    return time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default=os.environ.get("WORKFLOW_ADDRESS", "127.0.0.1:50051"))
    args = parser.parse_args()
    async with WorkflowClient(args.address) as client:
        began = time.perf_counter()
        one = await research(client, "warm-up", began)
        print(f"one run alone: {one:.2f}s\n")
        began = time.perf_counter()
        times = await asyncio.gather(*(research(client, t, began) for t in TOPICS))
        total = time.perf_counter() - began
        print(
            f"\n{len(TOPICS)} runs at once: {total:.2f}s in all "
            f"(one run alone took {one:.2f}s; slowest of the three {max(times):.2f}s)"
        )


if __name__ == "__main__":
    asyncio.run(main())
