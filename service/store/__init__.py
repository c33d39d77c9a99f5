"""Where runs and their event logs are kept."""

from .base import RunQuery, Store, StoredRun
from .memory import MemoryStore

__all__ = ["MemoryStore", "RunQuery", "Store", "StoredRun"]
