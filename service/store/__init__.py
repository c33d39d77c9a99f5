"""Where runs and their event logs are kept."""

from .base import RunQuery, Store, StoredRun
from .memory import MemoryStore
from .sqlite import SqliteStore, StoreError, StoreUnavailableError, sqlite_path

__all__ = [
    "MemoryStore",
    "RunQuery",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "StoredRun",
    "open_store",
    "sqlite_path",
]


def open_store(url: str) -> Store:
    """``memory`` or ``sqlite:///path/runs.db`` (the path relative to the working directory;
    four slashes for an absolute one). Must be called on the event loop."""
    if url == "memory":
        return MemoryStore()
    if url.startswith("sqlite:"):
        return SqliteStore(sqlite_path(url))
    raise StoreError(f"--store {url!r}: expected 'memory' or 'sqlite:///path/to/runs.db'")
