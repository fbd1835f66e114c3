"""Online stores: the interface, SQLite (embedded default) and Redis (production)."""

from ml_platform.features.stores.base import (
    EntityState,
    EventRecord,
    OnlineStore,
    TxRecord,
    open_store,
    sqlite_path,
    to_ns,
)

__all__ = [
    "EntityState",
    "EventRecord",
    "OnlineStore",
    "TxRecord",
    "open_store",
    "sqlite_path",
    "to_ns",
]
