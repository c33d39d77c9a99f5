"""Finding what a block of test code leaves in reference cycles."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cycle_garbage() -> Iterator[list[object]]:
    """The list it yields receives, when the block ends, every object that only the cyclic
    collector could free of those the block left unreachable. The collector is off inside
    the block, so nothing is freed behind the test's back."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found: list[object] = []
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
