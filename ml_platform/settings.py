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
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator
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
    use_case_dirs: str = Field(
        "",
        description="Extra use-case folders (os.pathsep-separated): each a use-case folder "
        "or a folder of them, found besides the package's own.",
    )

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
    model_name: str = Field(
        "fraud_detector",
        description="Registered model the real-time API and the edge export serve (fraud's); "
        "the Dagster assets and the registry commands use their use case's model_name.",
    )
    # --- training, promotion gate ---------------------------------------------------------
    train_days: int = Field(14, ge=1, description="Training window length (days).")
    valid_days: int = Field(7, ge=1, description="Validation window, the latest matured days.")
    baseline_margin_ap: float = Field(
        0.005, description="LightGBM is registered only if its AP beats the baseline's by this."
    )
    promotion_margin_ap: float = Field(
        0.005, description="Challenger becomes champion if its AP beats the champion's by this."
    )
    gate_min_auc: float = Field(0.6, description="Never promote a model below this ROC AUC.")
    train_threads: int = Field(2, ge=1, description="Threads LightGBM may use.")

    # --- compute (where batch work runs: features, training, scoring, monitoring) ------------
    compute: Literal["local", "dask"] = Field(
        "local", description="local: in this process; dask: on a Dask cluster."
    )
    dask_address: str | None = Field(
        None,
        description="Dask scheduler address (tcp://host:8786); when absent and compute='dask', "
        "the platform starts a LocalCluster.",
    )
    dask_train_min_rows: int = Field(
        1_000_000,
        ge=1,
        description="With compute='dask', training sets of at least this many rows are fitted "
        "on the cluster (lightgbm.dask, the baseline by distributed Newton steps); smaller ones "
        "in the run's process, where the cluster's set-up costs more than it saves.",
    )

    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "mlp"
    redis_timeout_seconds: float = Field(
        1.0,
        gt=0,
        description="Connect and read timeout of the online store's Redis client: a Redis "
        "that hangs costs a request this long, then a 503 (never a hung worker).",
    )

    # --- serving (BentoML API, prediction log, batch scoring, edge) ---------------------------
    serving_host: str = Field("127.0.0.1", description="Address `bentoml serve` binds to.")
    serving_port: int = Field(3001, ge=1, le=65535, description="API port (Dagster uses 3000).")
    serving_workers: int = Field(1, ge=1, description="BentoML worker processes.")
    serving_reload_seconds: float = Field(
        15.0, ge=0, description="Poll the registry aliases this often (0: only POST /reload)."
    )
    serving_max_batch: int = Field(1000, ge=1, description="Most transactions per /predict_batch.")
    serving_log_flush_seconds: float = Field(
        0.05, gt=0, description="Prediction-log writer batches rows for at most this long."
    )
    serving_max_future_seconds: float = Field(
        300,
        ge=0,
        description="Refuse transactions dated more than this after the service clock (400).",
    )

    # --- production profile -----------------------------------------------------------------
    # profile="production" puts the Dagster instance on PostgreSQL (deploy/dagster.yaml reads
    # the ML_PLATFORM_PG_* variables), MLflow tracking + registry on PostgreSQL and the online
    # store on Redis, unless mlflow_tracking_uri / online_store are set explicitly.
    pg_host: str = Field("127.0.0.1", description="PostgreSQL host (production profile).")
    pg_port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port.")
    pg_user: str = Field("postgres", description="PostgreSQL user.")
    pg_password: SecretStr = Field(
        SecretStr(""), description="PostgreSQL password: from the environment, never the repo."
    )
    pg_dagster_db: str = Field("dagster", description="Database of Dagster runs and events.")
    pg_mlflow_db: str = Field("mlflow", description="Database of MLflow tracking + registry.")
    api_token: SecretStr | None = Field(
        None, description="If set, the API requires `Authorization: Bearer <token>` (not /readyz)."
    )
    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Request bodies above this size get 413."
    )

    # --- monitoring and automatic retraining -----------------------------------------------
    drift_share_threshold: float = Field(
        0.3, ge=0, le=1, description="Drifted-feature share above which the check warns/retrains."
    )
    drift_reference_max_rows: int = Field(
        20_000, ge=1000, description="Rows sampled from the champion's training reference."
    )
    retrain_performance_margin: float = Field(
        0.05, ge=0, description="Retrain when labeled AP drops this far below the reference."
    )
    retrain_min_new_labeled_days: int = Field(
        14, ge=1, description="Retrain when this many labeled days are newer than the champion."
    )
    retrain_min_days_between: int = Field(
        3, ge=0, description="At most one triggered retraining per this many data days."
    )
    performance_window_days: int = Field(
        3, ge=1, description="Latest labeled days averaged for the performance rule."
    )
    skew_tolerance: float = Field(1e-9, ge=0, description="Online vs batch feature tolerance.")
    sensor_interval_seconds: int = Field(60, ge=5, description="Sensor evaluation interval.")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.end_date < self.start_date:
            raise ValueError(f"end_date ({self.end_date}) is before start_date ({self.start_date})")
        if self.source == "files" and self.source_dir is None:
            raise ValueError("source_dir: required when source='files'")
        self.data_dir = self.data_dir.expanduser().resolve()
        self.dagster_home = self.dagster_home.expanduser().resolve()
        self._apply_profile()
        return self

    def _apply_profile(self) -> None:
        """Production defaults for what the user did not set explicitly."""
        if self.api_token is not None and not self.api_token.get_secret_value():
            self.api_token = None  # ML_PLATFORM_API_TOKEN= (empty) means auth off
        if self.profile != "production":
            return
        if "mlflow_tracking_uri" not in self.model_fields_set:
            self.mlflow_tracking_uri = self.postgres_url(self.pg_mlflow_db)
        if "online_store" not in self.model_fields_set:
            self.online_store = "redis"

    def postgres_url(self, db_name: str) -> str:
        """SQLAlchemy URL of ``db_name`` on the PostgreSQL server, explicitly psycopg2.

        SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not installed.
        """
        user = quote(self.pg_user, safe="")
        password = self.pg_password.get_secret_value()
        auth = f"{user}:{quote(password, safe='')}" if password else user
        host = f"{self.pg_host}:{self.pg_port}"
        return f"postgresql+psycopg2://{auth}@{host}/{quote(db_name, safe='')}"

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
    def mlflow_artifacts_dir(self) -> Path:
        """Artifacts of the experiments the platform creates (beside the data, not the cwd)."""
        return self.data_dir / "mlartifacts"

    @property
    def n_days(self) -> int:
        return (self.end_date - self.start_date).days + 1

    def days(self) -> list[date]:
        return [self.start_date + timedelta(days=i) for i in range(self.n_days)]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
