"""One settings object for the whole platform.

Every knob is an environment variable with the ``ML_PLATFORM_`` prefix (e.g.
``ML_PLATFORM_DATA_DIR``); the embedded defaults run on a laptop with no server.
Nothing else in the code base reads ``os.environ`` for configuration.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Platform configuration; see the README's "Configuration" table."""

    model_config = SettingsConfigDict(env_prefix="ML_PLATFORM_", extra="ignore")

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(PROJECT_DIR / "data", description="Lake, warehouse, stores, reports.")
    profile: Literal["embedded", "production"] = "embedded"
    dagster_home: Path = Field(PROJECT_DIR / ".dagster_home", description="Dagster instance.")

    # --- data source ---------------------------------------------------------------------
    source: Literal["simulator", "files"] = "simulator"
    source_dir: Path | None = Field(None, description="Daily YYYY-MM-DD.parquet/.csv files.")

    # --- simulator (demo scale by default; see benchmarks for full scale) -----------------
    sim_seed: int = 42
    sim_n_customers: int = 1000
    sim_n_terminals: int = 2000
    sim_drift_start: date | None = Field(None, description="Day covariate+concept drift begins.")

    # --- partition range -----------------------------------------------------------------
    start_date: date = date(2025, 4, 1)
    end_date: date = date(2025, 6, 29)  # inclusive

    # --- data quality ----------------------------------------------------------------------
    label_delay_days: int = 7
    quarantine_max_share: float = 0.01

    # --- registry / serving ----------------------------------------------------------------
    mlflow_tracking_uri: str | None = Field(None, description="Default: SQLite in data_dir.")
    model_name: str = "fraud_detector"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "mlp"

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.end_date < self.start_date:
            raise ValueError(
                f"end_date ({self.end_date}) is before start_date ({self.start_date})"
            )
        if self.source == "files" and self.source_dir is None:
            raise ValueError("source_dir: required when source='files'")
        self.data_dir = self.data_dir.expanduser().resolve()
        self.dagster_home = self.dagster_home.expanduser().resolve()
        return self

    # --- derived paths ---------------------------------------------------------------------
    @property
    def lake_dir(self) -> Path:
        """Parquet tables, one hive folder per daily partition."""
        return self.data_dir / "lake"

    @property
    def warehouse_path(self) -> Path:
        """DuckDB file written only by dbt (single writer)."""
        return self.data_dir / "warehouse.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_dir / 'mlflow.db'}"

    @property
    def n_days(self) -> int:
        return (self.end_date - self.start_date).days + 1

    def days(self) -> list[date]:
        return [self.start_date + timedelta(days=i) for i in range(self.n_days)]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
