"""A small real platform state for the monitoring tests (no mocks).

Simulated days (with the drift switch) -> validated transactions and batch features in the
lake -> a real model trained on them and registered as champion in a test MLflow -> batch
predictions -> API answers (features from the online engine on the store loaded with the
earlier days) in the real prediction log (written by the serving stage's writer), one of
them with a tampered feature. Built once per test module (~10-20 s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from ml_platform.data import lake
from ml_platform.data.contract import TX_DATETIME
from ml_platform_tests.unit.test_skew import online_logged_features

TAMPERED_FEATURE = "customer_id_nb_tx_7day_window"
#: The fraud use case's registered model, which the monitoring assets read.
MODEL = "fraud_detector"


@dataclass
class World:
    settings: object
    days: list[date]
    last_day: date
    champion_version: str
    n_logged: int
    tampered_id: int


def build_world(settings, *, n_days: int = 36, drift_from: int = 30, n_logged: int = 40) -> World:
    from ml_platform.data.simulator import generate_day
    from ml_platform.features import FEATURE_COLUMNS, FEATURE_VERSION, build_features
    from ml_platform.features.stores.base import sqlite_path
    from ml_platform.serving.prediction_log import (
        LogEntry,
        PredictionLogWriter,
        prediction_log_path,
    )
    from ml_platform.serving.scoring import load_model, score_by_day
    from ml_platform.training import registry
    from ml_platform.training.datasets import Windows, join_labels
    from ml_platform.training.models import train_candidates

    s = settings
    days = [s.start_date + timedelta(days=i) for i in range(n_days)]
    drift_start = days[drift_from]
    tx = pd.concat(
        [
            generate_day(
                d,
                seed=s.sim_seed,
                n_customers=s.sim_n_customers,
                n_terminals=s.sim_n_terminals,
                drift_start=drift_start,
            )
            for d in days
        ],
        ignore_index=True,
    )
    # the drifted days get a strong, obvious covariate shift so the test is not borderline
    late = tx[TX_DATETIME] >= pd.Timestamp(drift_start)
    tx.loc[late, "tx_amount"] = (tx.loc[late, "tx_amount"] * 2.5).round(2)
    feats = build_features(tx, label_delay_days=s.label_delay_days)
    feats = tx[["transaction_id", TX_DATETIME, "customer_id", "terminal_id"]].merge(
        feats, on="transaction_id"
    )
    day_of = tx[TX_DATETIME].dt.date
    fday = feats[TX_DATETIME].dt.date
    for d in days:
        lake.write_partition(
            tx[day_of == d].reset_index(drop=True), s.lake_dir, "validated_transactions", d
        )
        lake.write_partition(
            feats[fday == d].reset_index(drop=True), s.lake_dir, "transaction_features", d
        )

    # a real model: train on days 0..13, validate on 21..27 (label-delay gap), register
    windows = Windows(days[0], days[13], days[21], days[27], s.label_delay_days)
    labeled = join_labels(feats.drop(columns=[TX_DATETIME, "customer_id", "terminal_id"]), tx)
    lday = labeled[TX_DATETIME].dt.date
    train = labeled[(lday >= windows.train_start) & (lday <= windows.train_end)]
    valid = labeled[(lday >= windows.valid_start) & (lday <= windows.valid_end)]
    cands = train_candidates(train, valid, list(FEATURE_COLUMNS), threads=1)
    info = registry.log_training_run(
        cands,
        train,
        valid,
        windows,
        model_name=MODEL,
        use_case="fraud",
        feature_version=FEATURE_VERSION,
        as_of=str(days[28]),
    )
    registry.promote(info.version, model_name=MODEL, who="test", why="monitoring test champion")
    model = load_model("champion", model_name=MODEL)

    parts = score_by_day(feats, model, [d.isoformat() for d in days[20:]])
    for key, frame in parts.items():
        lake.write_partition(frame, s.lake_dir, "batch_predictions", key)

    # the API answered some transactions of the last day, its features from the online
    # engine on the store loaded with the earlier days; one logged feature is wrong
    last = days[-1]
    requests = tx[day_of == last].head(n_logged).reset_index(drop=True)
    today = online_logged_features(tx[day_of < last], requests, sqlite_path(s))
    raw = requests.set_index("transaction_id").loc[today["transaction_id"]]
    writer = PredictionLogWriter(prediction_log_path(s), FEATURE_COLUMNS, flush_seconds=0.05)
    tampered_id = int(today["transaction_id"].iloc[5])
    x = today[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    scores = model.score(x)
    for i, row in today.iterrows():
        vec = x[i].copy()
        if int(row["transaction_id"]) == tampered_id:
            vec[list(FEATURE_COLUMNS).index(TAMPERED_FEATURE)] += 3.0
        r = raw.loc[row["transaction_id"]]
        writer.submit(
            LogEntry(
                logged_at=time.time(),
                request_id=writer.new_request_id(),
                endpoint="/predict",
                transaction={
                    "transaction_id": int(row["transaction_id"]),
                    "tx_datetime": r[TX_DATETIME],
                    "customer_id": int(r["customer_id"]),
                    "terminal_id": int(r["terminal_id"]),
                    "tx_amount": float(r["tx_amount"]),
                },
                features=vec,
                score=float(scores[i]),
                model=model,
                latency_ms=1.0 + 0.01 * i,
            )
        )
    writer.close()
    return World(s, days, last, str(info.version), len(today), tampered_id)
