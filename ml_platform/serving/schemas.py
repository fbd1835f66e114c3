"""Request and response models of the real-time API (DESIGN.md, "Real-time API").

Strict pydantic models: a mistyped field (``"12"`` for an id, ``true`` for an amount) is a
400 naming the field rather than a silent coercion, and amounts must be finite and >= 0.
Timezone-aware datetimes are converted to naive UTC, the lake's convention.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

INT64_MAX = 2**63 - 1
TX_DATETIME_MIN = datetime(1678, 1, 1)  # int64 ns timestamps: 1677-09-21..2262-04-11
TX_DATETIME_MAX = datetime(2262, 1, 1)


class Transaction(BaseModel):
    """One card transaction to score: the raw contract without the label."""

    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        # "example" (OpenAPI 3.0): BentoML's schema model rejects JSON-schema "examples"
        json_schema_extra={
            "example": {
                "transaction_id": 1,
                "tx_datetime": "2025-05-15T12:30:00",
                "customer_id": 12,
                "terminal_id": 345,
                "tx_amount": 57.3,
            }
        },
    )

    transaction_id: int = Field(ge=0, le=INT64_MAX, description="Unique id, int64 >= 0.")
    tx_datetime: datetime = Field(description="ISO 8601 date and time; aware -> naive UTC.")
    customer_id: int = Field(ge=0, le=INT64_MAX, description="Customer (card) id, >= 0.")
    terminal_id: int = Field(ge=0, le=INT64_MAX, description="Terminal id, >= 0.")
    tx_amount: float = Field(ge=0, allow_inf_nan=False, description="Amount, finite, >= 0.")

    @field_validator("tx_datetime")
    @classmethod
    def _naive_utc(cls, value: datetime) -> datetime:
        try:
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00 has no UTC year
            value = datetime.min
        # the feature engines work in int64 nanoseconds (pandas' range): found by fuzzing
        if not TX_DATETIME_MIN <= value <= TX_DATETIME_MAX:
            raise ValueError(
                f"outside the supported range {TX_DATETIME_MIN:%Y-%m-%d}.."
                f"{TX_DATETIME_MAX:%Y-%m-%d}"
            )
        return value

    def as_record(self) -> dict[str, Any]:
        """The plain dict the feature engines and the prediction log take."""
        return {
            "transaction_id": self.transaction_id,
            "tx_datetime": self.tx_datetime,
            "customer_id": self.customer_id,
            "terminal_id": self.terminal_id,
            "tx_amount": self.tx_amount,
        }


class Prediction(BaseModel):
    """The champion's answer for one transaction (a shadow challenger is never returned)."""

    transaction_id: int
    fraud_probability: float
    is_fraud: bool
    threshold: float
    model_name: str
    model_version: str


class OnlineStoreDescription(BaseModel):
    """The online store the features come from: how fresh it is and how much it holds."""

    kind: str = Field(description="sqlite or redis (ML_PLATFORM_ONLINE_STORE).")
    watermark: str | None = Field(description="Newest event time held (naive UTC); None: empty.")
    entities: dict[str, int] = Field(description="Entities with state, counted at start/reload.")
    entities_counted_at: str | None = Field(None, description="When they were counted (UTC).")
    error: str | None = Field(None, description="Why the store could not be read, if so.")


class ModelDescription(BaseModel):
    """What `/model` reports: the champion, the shadow challenger, the online store."""

    model_name: str
    champion: dict[str, Any] | None
    challenger: dict[str, Any] | None
    feature_version: str
    feature_columns: list[str]
    loaded_at: str | None
    last_error: str | None = None
    online_store: OnlineStoreDescription | None = None


class FeatureVector(BaseModel):
    """`POST /features`: the online features of a transaction, which is not recorded."""

    transaction_id: int
    tx_datetime: datetime
    feature_version: str
    features: dict[str, float] = Field(description="FEATURE_COLUMNS order.")
