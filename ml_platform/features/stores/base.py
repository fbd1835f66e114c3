"""The online store interface: bounded per-entity transaction state for the online engine.

Each transaction is kept under its customer and under its terminal as
``(time_ns, transaction_id, amount, fraud)``; ``fraud`` is 1 only once a matured label said
so (unknown labels count as 0, like a legitimate transaction). An entity keeps only what the
largest window plus the label delay needs (``horizon_ns``); idle entities expire.

The store's **watermark** is the newest event time it holds, persisted in the store itself:
``load`` sets it, ``append`` only moves it forward. Pruning on write removes an entity's
entries at or before ``watermark - horizon``, so a late or early request never decides on
its own how much history is kept (the API refuses timestamps from the future).
The API here (fetch, append, watermark, entity counts) says nothing of the layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.data.contract import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
)
from ml_platform.features.definitions import DAY_NS, check_label_delay, horizon_days

#: The entities whose state the store keeps (feature definitions use these two).
ENTITIES: tuple[str, ...] = (CUSTOMER_ID, TERMINAL_ID)


@dataclass(frozen=True)
class EntityState:
    """One entity's recent transactions, sorted by time, as small numpy arrays."""

    times: np.ndarray  # int64 ns, naive UTC
    ids: np.ndarray  # int64
    amounts: np.ndarray  # float64
    frauds: np.ndarray  # int64, 1 = matured fraud label

    @classmethod
    def empty(cls) -> EntityState:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, np.zeros(0, dtype=np.float64), z)

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> EntityState:
        """From ``(time_ns, id, amount, fraud)`` tuples."""
        if not rows:
            return cls.empty()
        t, i, a, f = zip(*rows, strict=True)
        return cls(
            np.array(t, dtype=np.int64),
            np.array(i, dtype=np.int64),
            np.array(a, dtype=np.float64),
            np.array(f, dtype=np.int64),
        )


@dataclass(frozen=True)
class TxRecord:
    """A transaction as the store keeps it (timestamp already in ns)."""

    transaction_id: int
    time_ns: int
    customer_id: int
    terminal_id: int
    tx_amount: float


class OnlineStore(ABC):
    """Per-entity state; implementations make ``fetch`` one round trip."""

    #: what ``online_store`` setting selects this implementation
    kind: str = ""

    def __init__(self, label_delay_days: int = 7) -> None:
        self.label_delay_days = check_label_delay(label_delay_days)
        self.horizon_ns = horizon_days(self.label_delay_days) * DAY_NS

    @abstractmethod
    def fetch(
        self,
        customer_id: int,
        terminal_id: int,
        customer_lo_ns: int,
        terminal_lo_ns: int,
        hi_ns: int,
    ) -> tuple[EntityState, EntityState]:
        """Customer and terminal state with ``lo_ns < time_ns <= hi_ns``, sorted by time."""

    @abstractmethod
    def append(self, tx: TxRecord) -> None:
        """Record one transaction (no label), advance the watermark to it if it is newer,
        then drop its entities' entries at or before ``watermark - horizon``."""

    @abstractmethod
    def set_frauds(self, frauds: pd.DataFrame) -> int:
        """Mark matured fraud labels (contract columns, rows with tx_fraud == 1)."""

    @abstractmethod
    def _bulk_insert(self, rows: pd.DataFrame) -> None:
        """Insert rows (time_ns, transaction_id, customer_id, terminal_id, tx_amount, fraud)."""

    @abstractmethod
    def clear(self) -> None:
        """Remove every entity and the watermark of this store (its namespace only)."""

    @abstractmethod
    def entity_counts(self) -> dict[str, int]:
        """Number of entities with state, per entity kind (may scan: not per request)."""

    @abstractmethod
    def watermark_ns(self) -> int | None:
        """Newest event time the store holds (naive-UTC ns); None while it is empty."""

    @abstractmethod
    def _set_watermark(self, time_ns: int) -> None:
        """Replace the watermark (``clear`` removes it); only ``load`` may move it back."""

    def describe(self) -> dict[str, Any]:
        """Kind, watermark (ISO) and entity counts: what the demo and ``GET /model`` show."""
        return {
            "kind": self.kind,
            "watermark": ns_to_iso(self.watermark_ns()),
            "entities": self.entity_counts(),
        }

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self, transactions: pd.DataFrame, as_of: pd.Timestamp | str) -> dict[str, int]:
        """Replace the state with what the online engine needs at ``as_of``.

        Keeps transactions in ``(as_of - horizon, as_of]``; a label is loaded only if it has
        matured (transaction at or before ``as_of - label delay``). The watermark becomes the
        newest transaction kept (none kept: the store is empty and has no watermark).
        """
        from ml_platform.features.batch import naive_utc

        missing = [
            c
            for c in (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD)
            if c not in transactions.columns
        ]
        if missing:
            raise ValueError(f"transactions: missing column(s) {missing}")
        as_of_ns = to_ns(as_of)
        t = naive_utc(transactions[TX_DATETIME]).to_numpy("datetime64[ns]").view(np.int64)
        keep = (t > as_of_ns - self.horizon_ns) & (t <= as_of_ns)
        matured = t <= as_of_ns - self.label_delay_days * DAY_NS
        rows = pd.DataFrame(
            {
                "time_ns": t[keep],
                TRANSACTION_ID: transactions[TRANSACTION_ID].to_numpy(np.int64)[keep],
                CUSTOMER_ID: transactions[CUSTOMER_ID].to_numpy(np.int64)[keep],
                TERMINAL_ID: transactions[TERMINAL_ID].to_numpy(np.int64)[keep],
                TX_AMOUNT: transactions[TX_AMOUNT].to_numpy(np.float64)[keep],
                "fraud": (transactions[TX_FRAUD].to_numpy().astype(np.int64) * matured)[keep],
            }
        )
        self.clear()
        self._bulk_insert(rows)
        if len(rows):
            self._set_watermark(int(rows["time_ns"].max()))
        counts = self.entity_counts()
        return {"rows": len(rows), "labels": int(rows["fraud"].sum()), **counts}


_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def to_ns(value: object) -> int:
    """A timestamp (datetime, str, numpy, pandas; aware -> UTC) as naive-UTC nanoseconds."""
    if type(value) is datetime and value.tzinfo is None and 1678 <= value.year <= 2261:
        # the request path's case: exact integer arithmetic, no pandas Timestamp (~10 µs)
        return (value - _EPOCH) // _MICROSECOND * 1000
    ts = value if isinstance(value, pd.Timestamp) else pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError(f"{TX_DATETIME}: not a timestamp: {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.value)


def ns_to_iso(time_ns: int | None) -> str | None:
    """Naive-UTC nanoseconds as an ISO 8601 string (None stays None)."""
    return None if time_ns is None else pd.Timestamp(time_ns).isoformat()


def open_store(settings: object | None = None, label_delay_days: int | None = None) -> OnlineStore:
    """The store the settings select (``online_store``: sqlite file or redis)."""
    from ml_platform.settings import get_settings

    s = settings or get_settings()
    d = s.label_delay_days if label_delay_days is None else label_delay_days
    if s.online_store == "redis":
        from ml_platform.features.stores.redis import RedisStore

        return RedisStore(
            s.redis_url,
            prefix=f"{s.redis_prefix}:fs",
            label_delay_days=d,
            timeout_s=s.redis_timeout_seconds,
        )
    from ml_platform.features.stores.sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(s), label_delay_days=d)


def sqlite_path(settings: object) -> Path:
    """The embedded store's file, under the data directory."""
    return Path(settings.data_dir) / "online_store.sqlite"
