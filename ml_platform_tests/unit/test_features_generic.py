"""The batch engine reads every column and window from the use case, and fraud stays bit-exact.

A throw-away use case (string event ids and entity keys, windows in minutes and hours, a
one-day label delay) is declared in ``tmp_path`` and loaded by the real loader; the real
engine must match a brute-force reference that takes its columns and windows (ns) from the
``FeatureSet``, on histories whose times sit on a minute grid so window edges and ties occur.
Fraud's features are pinned by a digest of a small simulated set.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_platform.data.simulator import generate_days
from ml_platform.features import (
    build_features,
    build_features_for_days,
    definitions,
    feature_set,
    horizon_days,
)
from ml_platform.features.definitions import DAY_NS, NIGHT_LAST_HOUR, FeatureDef, FeatureSet
from ml_platform.use_cases import UseCase, UseCaseError, load_use_case
from ml_platform.use_cases.loader import USE_CASE_FILE

BASE = pd.Timestamp("2025-04-05 05:00:00")  # a Saturday, an hour before the night ends
MINUTE_NS = 60 * 10**9
SPENDS = [0.0, 0.5, 3.25, 19.99, 120.0]
TARGETS = [-3.5, 0.0, 2.25, 40.0]
MATURED = {"matured": True}


def _window(name: str, entity: str, function: str, **more: Any) -> dict[str, Any]:
    return {"kind": "window", "name": name, "entity": entity, "function": function, **more}


def _clicks(task: str) -> dict[str, Any]:
    """A click use case: string keys, minute and hour windows, a label known a day later."""
    label_features = [
        _window(
            "page_buys_{n}{unit}", "page", "mean", of="bought", windows=["30min", "6h"], **MATURED
        ),
        _window("page_bought_1h", "page", "sum", of="bought", window="1h", **MATURED),
    ]
    if task == "binary":
        label_features += [
            _window("page_since_buy", "page", "days_since_last_positive", window="3h", **MATURED),
            _window(
                "page_since_first", "page", "days_since_first_positive", window="3h", **MATURED
            ),
            _window("page_share", "page", "positive_share_since_first", window="3h", **MATURED),
            _window(
                "page_buy_spend", "page", "mean_where_positive", of="spend", window="3h", **MATURED
            ),
        ]
        tail = {
            "task": {
                "candidates": ["logistic_regression"],
                "primary_metric": {"name": "average_precision", "direction": "maximize"},
                "decision": {"kind": "threshold"},
            }
        }
    else:
        tail = {
            "task": {
                "candidates": ["linear_regression"],
                "primary_metric": {"name": "mean_absolute_error", "direction": "minimize"},
                "decision": {"kind": "value_and_flag", "flag": "high", "above": 10.0},
            }
        }
    return {
        "name": "clicks",
        "service": "clicks_service:Clicks",
        "schema": {
            "event_id": {"column": "click_id", "type": "string"},
            "event_time": "at",
            "entities": {"user": "string", "page": "string"},
            "values": {"spend": "float"},
            "request": ["click_id", "at", "user", "page", "spend"],
        },
        "label": {"column": "bought", "task": task, "delay_days": 1},
        "features": [
            {"kind": "row", "name": "spend", "function": "value", "of": "spend"},
            {"kind": "row", "name": "weekend", "function": "is_weekend"},
            {"kind": "row", "name": "night", "function": "is_night", "last_hour": NIGHT_LAST_HOUR},
            _window("user_clicks_{n}{unit}", "user", "count", windows=["15min", "90min"]),
            _window("user_spend_45min", "user", "mean", of="spend", window="45min"),
            _window("user_ratio_2h", "user", "ratio_to_mean", of="spend", window="2h"),
            _window("user_gap_30min", "user", "seconds_since_previous", window="30min"),
            _window("user_known_20min", "user", "count", window="20min", **MATURED),
            *label_features,
        ],
        **tail,
        "source": {"default": "files"},
        "settings": {"start_date": "2025-04-01", "end_date": "2025-04-30"},
    }


def write_clicks(root: Path, task: str) -> UseCase:
    folder = root / "clicks"
    folder.mkdir(parents=True)
    (folder / USE_CASE_FILE).write_text(yaml.safe_dump(_clicks(task), sort_keys=False))
    return load_use_case(folder)


@pytest.fixture(scope="module", params=["binary", "regression"])
def clicks(request, tmp_path_factory) -> UseCase:
    return write_clicks(tmp_path_factory.mktemp(request.param), request.param)


@st.composite
def click_histories(draw: st.DrawFn, task: str, max_rows: int = 40) -> pd.DataFrame:
    """Clicks on a few days, at minute offsets that are exact window lengths apart."""
    n = draw(st.integers(1, max_rows))
    days = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    minutes = np.array(
        draw(
            st.lists(st.sampled_from([0, 15, 20, 30, 45, 60, 90, 120, 180]), min_size=n, max_size=n)
        )
    )
    secs = np.array(draw(st.lists(st.sampled_from([0, 0, 1]), min_size=n, max_size=n)))
    ids = draw(st.permutations(range(n)))  # "c10" sorts before "c9": string order, not numeric
    labels = st.integers(0, 1) if task == "binary" else st.sampled_from(TARGETS)
    return pd.DataFrame(
        {
            "click_id": [f"c{i}" for i in ids],
            "at": BASE + pd.to_timedelta(days * DAY_NS + minutes * MINUTE_NS + secs * 10**9),
            "user": draw(st.lists(st.sampled_from(["ann", "bo", "cy"]), min_size=n, max_size=n)),
            "page": draw(st.lists(st.sampled_from(["/a", "/b"]), min_size=n, max_size=n)),
            "spend": draw(st.lists(st.sampled_from(SPENDS), min_size=n, max_size=n)),
            "bought": draw(st.lists(labels, min_size=n, max_size=n)),
        }
    )


def reference_features(
    tx: pd.DataFrame,
    fs: FeatureSet,
    d: int,
    side_tables: dict[str, pd.DataFrame] | None = None,
) -> np.ndarray:
    """Every feature of every row from the definitions' wording, one row at a time; every
    column and window comes from ``fs`` (the reference of test_features_batch, generalised).
    Per-row label times: the entity's events whose label time is in ``(t - w, t]``; as-of
    joins: a plain scan of the side table (see ``reference_asof``)."""
    t = tx[fs.event_time].to_numpy().view(np.int64)
    ids = tx[fs.event_id].to_numpy()
    label = tx[fs.label].to_numpy(float)
    known_at = None
    if fs.known_at in tx.columns:
        known = tx[fs.known_at]
        known_at = np.where(known.isna(), 0, known.to_numpy().view(np.int64))
        known_ok = known.notna().to_numpy()
    out = np.zeros((len(tx), len(fs.features)))
    for i in range(len(tx)):
        ts = pd.Timestamp(t[i])
        for j, f in enumerate(fs.features):
            if f.aggregate == "asof":
                out[i, j] = reference_asof(tx, i, f, fs, side_tables)
                continue
            value = tx[f.value].to_numpy(float) if f.value else None
            if f.aggregate == "value":
                out[i, j] = value[i]
                continue
            if f.aggregate == "weekend":
                out[i, j] = ts.dayofweek >= 5
                continue
            if f.aggregate == "night":
                out[i, j] = ts.hour <= NIGHT_LAST_HOUR
                continue
            if f.aggregate == "hour":
                out[i, j] = ts.hour
                continue
            if f.aggregate == "weekday":
                out[i, j] = ts.dayofweek
                continue
            keys = tx[f.entity].to_numpy()
            same = keys == keys[i]
            w = f.window_ns
            empty_days = (d * DAY_NS + w) / DAY_NS
            if f.known_at is not None:
                sel = same & known_ok & (known_at > t[i] - w) & (known_at <= t[i])
                empty_days = (fs.known_within_ns + w) / DAY_NS
            elif f.delayed:
                hi = t[i] - d * DAY_NS
                sel = same & (t > hi - w) & (t <= hi)
            else:
                upto = (t < t[i]) | ((t == t[i]) & (ids <= ids[i]))  # event order, self included
                sel = same & upto & (t > t[i] - w)
            n = int(sel.sum())
            positive = sel & (label == 1)
            if f.aggregate == "count":
                out[i, j] = n
            elif f.aggregate in ("min", "max"):
                seen = (value if f.value else label)[sel]
                out[i, j] = (seen.min() if f.aggregate == "min" else seen.max()) if n else 0.0
            elif f.aggregate == "mean_amount":
                out[i, j] = value[sel].mean() if n else 0.0
            elif f.aggregate == "risk":
                out[i, j] = label[sel].mean() if n else 0.0
            elif f.aggregate == "fraud_count":
                out[i, j] = label[sel].sum()
            elif f.aggregate == "days_since_fraud":
                known = t[positive]
                out[i, j] = (t[i] - known.max()) / DAY_NS if len(known) else empty_days
            elif f.aggregate == "days_since_first_fraud" and f.known_at is not None:
                known = t[positive]  # the oldest positive by event time
                out[i, j] = (t[i] - known.min()) / DAY_NS if len(known) else empty_days
            elif f.aggregate in ("days_since_first_fraud", "fraud_share_since_first"):
                hits = np.flatnonzero(positive)
                if not len(hits):
                    out[i, j] = empty_days if "days" in f.aggregate else 0.0
                    continue
                first = min(hits, key=lambda k: (t[k], ids[k]))  # oldest in event order
                if f.aggregate == "days_since_first_fraud":
                    out[i, j] = (t[i] - t[first]) / DAY_NS
                else:
                    since = sel & ((t > t[first]) | ((t == t[first]) & (ids >= ids[first])))
                    out[i, j] = len(hits) / since.sum()
            elif f.aggregate == "fraud_mean_amount":
                out[i, j] = value[positive].mean() if positive.any() else 0.0
            elif f.aggregate == "amount_ratio":
                m = value[sel].mean() if n else 0.0
                out[i, j] = value[i] / m if m != 0 else 1.0
            elif f.aggregate == "seconds_since_prev":
                prev = t[sel & (ids != ids[i])]
                out[i, j] = (t[i] - prev.max()) / 1e9 if len(prev) else w / 1e9
            else:
                raise AssertionError(f.aggregate)
    return out


def reference_asof(
    tx: pd.DataFrame, i: int, f: FeatureDef, fs: FeatureSet, side_tables: dict | None
) -> float:
    """Row i's as-of value, by scanning the side table row by row: the newest row with the
    same keys known at or before t (the later row of the table at a tie), if younger than the
    max age and not null."""
    table = fs.side_table(f.table)
    rows = side_tables[f.table]
    t = pd.Timestamp(tx[fs.event_time].iloc[i]).value
    best, best_at = None, None
    for r in range(len(rows)):
        if pd.isna(rows[table.time].iloc[r]):
            continue
        if any(rows[key].iloc[r] != tx[column].iloc[i] for column, key in f.join):
            continue
        at = pd.Timestamp(rows[table.time].iloc[r]).value + table.known_after_ns
        if at <= t and (best_at is None or at >= best_at):
            best, best_at = r, at
    if best is None or t - best_at >= f.window_ns:
        return f.default
    value = rows[f.value].iloc[best]
    return f.default if pd.isna(value) else float(value)


def test_declaration_becomes_columns_and_ns_windows(clicks: UseCase) -> None:
    fs = feature_set(clicks)
    assert (fs.event_id, fs.event_time, fs.entity_columns) == ("click_id", "at", ("user", "page"))
    assert fs.input_columns == ("click_id", "at", "user", "page", "spend", "bought")
    got = {f.name: f for f in fs.features}
    assert got["user_clicks_15minute"].window_ns == 15 * MINUTE_NS
    assert got["page_buys_6hour"].window_ns == 360 * MINUTE_NS
    assert (got["page_buys_6hour"].label, got["page_buys_6hour"].value) == ("bought", None)
    assert got["user_ratio_2h"].value == "spend" and got["user_ratio_2h"].label is None
    assert got["user_clicks_15minute"].window_days == 15 / 1440
    assert horizon_days(1, clicks) == 2  # 1-day delay + the 6-hour window, rounded up


def test_a_use_case_outside_the_package_is_found_by_name(tmp_path: Path, settings_env) -> None:
    uc = write_clicks(tmp_path / "team", "binary")
    settings_env(use_case_dirs=str(tmp_path / "team"))
    definitions._named_feature_set.cache_clear()
    try:
        assert feature_set("clicks") == feature_set(uc)
    finally:
        definitions._named_feature_set.cache_clear()


def test_labels_known_at_a_per_row_time_need_a_bound_and_translate(tmp_path: Path) -> None:
    """A per-row label time without ``known_within`` fails at load; with it, every matured
    window reads that column and the horizon reaches back window + bound."""
    data = _clicks("binary")
    data["schema"]["extras"] = {"paid_at": "datetime"}
    data["label"] = {"column": "bought", "task": "binary", "known_at": "paid_at"}
    folder = tmp_path / "clicks"
    folder.mkdir()
    (folder / USE_CASE_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(UseCaseError, match="label.known_within: a label known at a per-row"):
        load_use_case(folder)
    data["label"]["known_within"] = "1h"
    (folder / USE_CASE_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    fs = feature_set(load_use_case(folder))
    matured = {f.known_at for f in fs.features if f.delayed}
    assert matured == {"paid_at"}
    assert {f.known_at for f in fs.features if not f.delayed} == {None}
    assert "paid_at" in fs.input_columns
    longest = max(f.window_ns for f in fs.features if f.delayed)
    assert fs.horizon_ns(7) == max(
        longest + 60 * MINUTE_NS, *(f.window_ns for f in fs.features if f.window_ns)
    )


COUNT = FeatureDef("n", "count", "user", MINUTE_NS)


@pytest.mark.parametrize(
    ("feature", "task", "message"),
    [
        (replace(COUNT, window_ns=0), "binary", "'n': window_ns must be >= 1"),
        (replace(COUNT, aggregate="risk", delayed=True), "binary", "'n': risk needs its label"),
        (replace(COUNT, aggregate="mean_amount"), "binary", "'n': mean_amount needs its value"),
        (replace(COUNT, entity=None), "binary", "'n': count needs an entity"),
        (
            replace(COUNT, aggregate="days_since_fraud", delayed=True, label="y"),
            "regression",
            "'n': days_since_fraud needs a binary label",
        ),
    ],
)
def test_definitions_the_engines_cannot_compute_are_refused(feature, task, message) -> None:
    with pytest.raises(ValueError, match=message):
        definitions._check((feature,), task)
    definitions._check((COUNT,), task)  # the unchanged feature is fine


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_string_keys_and_minute_windows_match_the_reference(clicks: UseCase, data) -> None:
    tx = data.draw(click_histories(clicks.task))
    fs = feature_set(clicks)
    got = build_features(tx, label_delay_days=1, use_case=clicks)
    assert list(got.columns) == ["click_id", *fs.columns]
    assert got["click_id"].tolist() == tx["click_id"].tolist()
    want = reference_features(tx, fs, 1)
    np.testing.assert_allclose(got[fs.columns].to_numpy(float), want, rtol=1e-9, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_string_keys_equal_the_integer_fast_path(clicks: UseCase, data) -> None:
    """Factorised string keys give exactly the features of the same keys as integers."""
    tx = data.draw(click_histories(clicks.task))
    as_ints = tx.assign(
        click_id=tx["click_id"].str[1:].astype(np.int64),
        user=pd.factorize(tx["user"])[0].astype(np.int64) * 7 + 3,
        page=pd.factorize(tx["page"])[0].astype(np.int64),
    )
    # integer ids order numerically: give the string ids the same order first
    tx = tx.assign(click_id=[f"c{i:03d}" for i in as_ints["click_id"]])
    fs = feature_set(clicks)
    a = build_features(tx, label_delay_days=1, use_case=clicks)[fs.columns]
    b = build_features(as_ints, label_delay_days=1, use_case=clicks)[fs.columns]
    np.testing.assert_array_equal(a.to_numpy(float), b.to_numpy(float))


def test_features_for_days_carry_the_use_case_keys(tmp_path: Path) -> None:
    uc = write_clicks(tmp_path, "binary")
    tx = pd.DataFrame(
        {
            "click_id": ["x", "y", "z"],
            "at": pd.to_datetime(["2025-04-01 10:00", "2025-04-02 10:00", "2025-04-02 10:10"]),
            "user": ["ann", "ann", "bo"],
            "page": ["/a", "/a", "/b"],
            "spend": [1.0, 2.0, 4.0],
            "bought": [1, 0, 0],
        }
    )
    out = build_features_for_days(tx, ["2025-04-02"], label_delay_days=1, use_case=uc)
    assert list(out.columns[:4]) == ["click_id", "at", "user", "page"]
    assert out["click_id"].tolist() == ["y", "z"]
    # x's purchase (exactly one day before y) is known to y: (t-1d-30min, t-1d] holds it
    assert out["page_buys_30minute"].tolist() == [1.0, 0.0]
    assert out["user_clicks_15minute"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop(columns="page"), r"clicks events: missing column\(s\) \['page'\]"),
        (lambda df: df.assign(spend=np.nan), "spend: contains nulls"),
        (lambda df: df.assign(spend=np.inf), "spend: must be finite"),
        (lambda df: df.assign(bought=2), "bought: must be 0 or 1"),
        (lambda df: df.assign(click_id="same"), "click_id: not unique"),
        (lambda df: df.assign(at="2025-04-01"), "at: must be a datetime column"),
    ],
)
def test_bad_input_names_the_use_case_column(tmp_path: Path, mutate, message: str) -> None:
    uc = write_clicks(tmp_path, "binary")
    tx = pd.DataFrame(
        {
            "click_id": ["a", "b"],
            "at": pd.to_datetime(["2025-04-01", "2025-04-02"]),
            "user": ["u", "u"],
            "page": ["p", "p"],
            "spend": [1.0, 2.0],
            "bought": [0, 1],
        }
    )
    with pytest.raises(ValueError, match=message):
        build_features(mutate(tx), label_delay_days=1, use_case=uc)


def test_a_numeric_label_must_be_finite(tmp_path: Path) -> None:
    uc = write_clicks(tmp_path, "regression")
    tx = pd.DataFrame(
        {
            "click_id": ["a"],
            "at": pd.to_datetime(["2025-04-01"]),
            "user": ["u"],
            "page": ["p"],
            "spend": [1.0],
            "bought": [np.inf],
        }
    )
    with pytest.raises(ValueError, match="bought: must be finite"):
        build_features(tx, label_delay_days=1, use_case=uc)


#: sha256 of (transaction ids, float64 feature block) of the set below, computed with the
#: engine before it read its columns from the use case: any changed bit of fraud fails here.
FRAUD_DIGEST = "dca1b8119904717d9cb411853ec2c281d2fac6242696136f4301dc19b07aa86a"


def test_fraud_features_are_bit_identical() -> None:
    tx = generate_days(
        date(2025, 4, 1), date(2025, 5, 15), seed=11, n_customers=150, n_terminals=300
    )
    assert len(tx) == 11_474 and tx["tx_fraud"].sum() == 97  # the same simulated set
    f = build_features(tx, label_delay_days=7)
    digest = hashlib.sha256(f.iloc[:, 0].to_numpy(np.int64).tobytes())
    digest.update(np.ascontiguousarray(f.iloc[:, 1:].to_numpy(np.float64)).tobytes())
    assert digest.hexdigest() == FRAUD_DIGEST


def test_importing_the_features_reads_no_declaration() -> None:
    """The definitions are loaded on first use: importing the package stays cheap."""
    code = (
        "import sys, ml_platform.features as f\n"
        "print('ml_platform.use_cases.loader' in sys.modules)\n"
        "print(len(f.FEATURE_COLUMNS), 'ml_platform.use_cases.loader' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "30", "True"]
