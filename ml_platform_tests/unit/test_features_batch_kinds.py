"""The batch engine computes the newer feature kinds exactly as the definitions word them.

Hour and weekday of the event time, min/max of a value or of the label over a window, windows
of labels known at a per-row time (``known_at``: the entity's events whose label became known
in ``(t - w, t]``) and as-of joins of side tables. A ``FeatureSet`` is built directly with
string and integer keys and minute windows; the engine must equal the brute-force reference
of ``test_features_generic`` (one row and one feature at a time, plain scans) on random small
histories with ties in time, unknown label times and side tables with ties and gaps, and a
few hand-computed cases pin the window edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_platform.features import build_features, build_features_for_days, feature_set
from ml_platform.features.definitions import DAY_NS, FeatureDef, FeatureSet, SideTableDef
from ml_platform.use_cases import load_use_case
from ml_platform.use_cases.loader import USE_CASE_FILE
from ml_platform_tests.unit.test_features_generic import _clicks, reference_features

MINUTE_NS = 60 * 10**9
BASE = pd.Timestamp("2025-04-06 22:30:00")  # a Sunday: the days drawn cross into Monday
SPENDS = [-2.0, 0.0, 0.5, 3.25, 19.99, 120.0]
TARGETS = [-3.5, 0.0, 2.25, 40.0]
WEATHER = SideTableDef("weather", (("site", "string"),), "obs_at", ("wind", "rain"), 10 * MINUTE_NS)
OWNERS = SideTableDef("owners", (("shop", "int"), ("owner", "string")), "since", ("score",))


def _f(name: str, aggregate: str, entity: str | None = None, minutes: int | None = None, **kw):
    window = minutes * MINUTE_NS if minutes is not None else None
    return FeatureDef(name, aggregate, entity, window, **kw)


def kinds_feature_set(task: str) -> FeatureSet:
    """Every new kind, on a string entity (user) and an integer one (shop), next to a fixed
    delay feature (the per-row label time replaces the delay only where it is set)."""
    per_row = {"delayed": True, "known_at": "paid_at"}
    label = {"label": "bought"}
    features = [
        _f("hour", "hour"),
        _f("weekday", "weekday"),
        _f("user_min_spend_30", "min", "user", 30, value="spend"),
        _f("user_max_spend_90", "max", "user", 90, value="spend"),
        _f("shop_min_spend_1", "min", "shop", 1, value="spend"),
        _f("shop_max_bought_fixed", "max", "shop", 60, delayed=True, **label),
        _f("shop_min_bought_fixed", "min", "shop", 60, delayed=True, **label),
        _f("user_n_known_30", "count", "user", 30, **per_row),
        _f("user_mean_known_60", "risk", "user", 60, **per_row, **label),
        _f("user_sum_known_60", "fraud_count", "user", 60, **per_row, **label),
        _f("shop_min_known_120", "min", "shop", 120, **per_row, **label),
        _f("shop_max_known_120", "max", "shop", 120, **per_row, **label),
        _f("shop_min_spend_known_45", "min", "shop", 45, value="spend", **per_row),
        _f("shop_max_spend_known_45", "max", "shop", 45, value="spend", **per_row),
        _f("user_mean_spend_known_60", "mean_amount", "user", 60, value="spend", **per_row),
        _f("user_ratio_known_60", "amount_ratio", "user", 60, value="spend", **per_row),
        _f("user_gap_30", "seconds_since_prev", "user", 30),
        _f(
            "wind_30",
            "asof",
            None,
            30,
            value="wind",
            table="weather",
            join=(("site", "site"),),
            default=-1.0,
        ),
        _f(
            "rain_120",
            "asof",
            None,
            120,
            value="rain",
            table="weather",
            join=(("site", "site"),),
            default=0.0,
        ),
        _f(
            "owner_score",
            "asof",
            None,
            60,
            value="score",
            table="owners",
            join=(("shop", "shop"), ("user", "owner")),
            default=7.5,
        ),
    ]
    if task == "binary":
        features += [
            _f("user_since_known_90", "days_since_fraud", "user", 90, **per_row, **label),
            _f("user_since_first_known_90", "days_since_first_fraud", "user", 90, **per_row,
               **label),
            _f("shop_spend_pos_known_60", "fraud_mean_amount", "shop", 60, value="spend",
               **per_row, **label),
        ]  # fmt: skip
    return FeatureSet(
        use_case="kinds",
        event_id="event",
        event_id_type="string",
        event_time="at",
        entities=(("user", "string"), ("shop", "int")),
        label="bought",
        label_task=task,
        features=tuple(features),
        side_tables=(WEATHER, OWNERS),
        known_at="paid_at",
        known_within_ns=150 * MINUTE_NS,
    )


GRID = [0, 1, 15, 30, 45, 60, 90, 120, 150]  # minutes: exact window lengths apart
LAGS = [0, 1, 15, 30, 45, 60, 120, None]  # label time - event time (minutes; None: unknown)


@st.composite
def kinds_histories(draw: st.DrawFn, task: str, string_ids: bool, max_rows: int = 30):
    """Events on a minute grid over two days (ties in time), label times some minutes
    later or unknown, and their two side tables with duplicated keys/times and null values."""
    n = draw(st.integers(1, max_rows))
    lists = lambda s: draw(st.lists(s, min_size=n, max_size=n))  # noqa: E731
    day = np.array(lists(st.integers(0, 1)), dtype=np.int64)
    minute = np.array(lists(st.sampled_from(GRID)), dtype=np.int64)
    at = BASE + pd.to_timedelta(day * DAY_NS + minute * MINUTE_NS)
    lag = lists(st.sampled_from(LAGS))
    paid = [
        a + pd.Timedelta(minutes=g) if g is not None else pd.NaT
        for a, g in zip(at, lag, strict=True)
    ]
    ids = draw(st.permutations(range(n)))
    labels = st.integers(0, 1) if task == "binary" else st.sampled_from(TARGETS)
    tx = pd.DataFrame(
        {
            "event": [f"e{i}" for i in ids] if string_ids else np.array(ids, dtype=np.int64),
            "at": at,
            "user": lists(st.sampled_from(["ann", "bo", "cy"])),
            "shop": np.array(lists(st.sampled_from([3, 7])), dtype=np.int64),
            "site": lists(st.sampled_from(["n", "s"])),
            "spend": lists(st.sampled_from(SPENDS)),
            "bought": lists(labels),
            "paid_at": pd.to_datetime(pd.Series(paid, dtype="datetime64[ns]")),
        }
    )
    k = draw(st.integers(0, 12))
    obs = np.array(draw(st.lists(st.sampled_from(GRID), min_size=k, max_size=k)), dtype=np.int64)
    obs_day = np.array(draw(st.lists(st.integers(-1, 1), min_size=k, max_size=k)), dtype=np.int64)
    maybe = st.one_of(st.none(), st.sampled_from([0.0, 1.5, 4.0, 12.25]))
    weather = pd.DataFrame(
        {
            "site": draw(st.lists(st.sampled_from(["n", "s", "x"]), min_size=k, max_size=k)),
            "obs_at": BASE + pd.to_timedelta(obs_day * DAY_NS + obs * MINUTE_NS),
            "wind": pd.array(draw(st.lists(maybe, min_size=k, max_size=k)), dtype="Float64"),
            "rain": draw(st.lists(st.sampled_from([0.0, 0.25, 2.0]), min_size=k, max_size=k)),
        }
    )
    j = draw(st.integers(0, 6))
    since = np.array(draw(st.lists(st.sampled_from(GRID), min_size=j, max_size=j)), dtype=np.int64)
    owners = pd.DataFrame(
        {
            "shop": np.array(draw(st.lists(st.sampled_from([3, 7]), min_size=j, max_size=j))),
            "owner": draw(st.lists(st.sampled_from(["ann", "bo"]), min_size=j, max_size=j)),
            "since": BASE + pd.to_timedelta(since * MINUTE_NS),
            "score": draw(st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=j, max_size=j)),
        }
    )
    return tx, {"weather": weather, "owners": owners}


FEATURE_SETS = {task: kinds_feature_set(task) for task in ("binary", "regression")}


@pytest.mark.parametrize("task", ["binary", "regression"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_new_kinds_match_the_reference(task: str, data: st.DataObject) -> None:
    fs = FEATURE_SETS[task]
    tx, side = data.draw(kinds_histories(task, string_ids=data.draw(st.booleans())))
    got = build_features(tx, label_delay_days=1, use_case=fs, side_tables=side)
    assert list(got.columns) == [fs.event_id, *fs.columns]
    assert got[fs.event_id].tolist() == tx[fs.event_id].tolist()
    want = reference_features(tx, fs, 1, side)
    np.testing.assert_allclose(got[fs.columns].to_numpy(float), want, rtol=1e-9, atol=1e-9)
    # only some rows asked for: the same values, every row still history
    rows = np.array(data.draw(st.lists(st.booleans(), min_size=len(tx), max_size=len(tx))))
    part = build_features(tx, label_delay_days=1, rows=rows, use_case=fs, side_tables=side)
    np.testing.assert_array_equal(part[fs.columns].to_numpy(float), got[fs.columns][rows])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_future_events_change_no_past_feature(data: st.DataObject) -> None:
    """Point in time, bit for bit: dropping every event after some time leaves the features of
    the rest unchanged (a label is known at or after its event, so none of theirs is lost)."""
    fs = FEATURE_SETS[data.draw(st.sampled_from(["binary", "regression"]))]
    tx, side = data.draw(kinds_histories("binary", string_ids=True))
    if fs.label_task == "regression":
        tx = tx.assign(bought=tx["bought"] * 2.5 - 0.5)
    cut = data.draw(st.sampled_from(sorted(tx["at"].unique())))
    past = tx[tx["at"] <= cut].reset_index(drop=True)
    full = build_features(tx, label_delay_days=1, use_case=fs, side_tables=side)
    part = build_features(past, label_delay_days=1, use_case=fs, side_tables=side)
    kept = full.set_index(fs.event_id).loc[past[fs.event_id], fs.columns]
    np.testing.assert_array_equal(part[fs.columns].to_numpy(), kept.to_numpy())


def _one_user(times: list[str], **columns) -> pd.DataFrame:
    n = len(times)
    return pd.DataFrame(
        {
            "event": [f"e{i}" for i in range(n)],
            "at": pd.to_datetime(times),
            "user": ["ann"] * n,
            "shop": np.full(n, 3, dtype=np.int64),
            "site": ["n"] * n,
            "spend": [1.0] * n,
            "bought": [0] * n,
            "paid_at": pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]"),
        }
    ).assign(**columns)


def _only(*features: FeatureDef, task: str = "binary", tables=(WEATHER, OWNERS)) -> FeatureSet:
    return FeatureSet(
        "kinds", "event", "string", "at", (("user", "string"), ("shop", "int")), "bought", task,
        features, tables, known_at="paid_at", known_within_ns=DAY_NS,
    )  # fmt: skip


def test_hour_and_weekday_by_hand() -> None:
    fs = _only(_f("h", "hour"), _f("wd", "weekday"))
    tx = _one_user(["2025-04-06 23:59:59", "2025-04-07 00:00:00", "1969-12-31 13:00:00"])
    got = build_features(tx, use_case=fs)
    assert got["h"].tolist() == [23.0, 0.0, 13.0]
    assert got["wd"].tolist() == [6.0, 0.0, 2.0]  # Sunday, Monday, Wednesday (before 1970)


def test_min_max_window_edges_by_hand() -> None:
    """(t - w, t] in event order: an event exactly w back is out, a tie with a larger id is
    not yet known, the current one is in; the delayed window ends exactly d back."""
    fs = _only(
        _f("lo", "min", "user", 30, value="spend"),
        _f("hi", "max", "user", 30, value="spend"),
        _f("hi_label", "max", "user", 30, delayed=True, label="bought"),
        _f("lo_label", "min", "user", 30, delayed=True, label="bought"),
        task="regression",
    )
    tx = _one_user(
        ["2025-04-01 10:00", "2025-04-01 10:30", "2025-04-01 10:30", "2025-04-02 10:30"],
        spend=[5.0, 2.0, 9.0, 4.0],
        bought=[-1.0, 8.0, 3.0, 0.0],
        event=["e0", "e2", "e1", "e3"],  # e1 comes first at the tie
    )
    got = build_features(tx, label_delay_days=1, use_case=fs)
    assert got["lo"].tolist() == [5.0, 2.0, 9.0, 4.0]  # 10:00 is exactly 30 min before: out
    assert got["hi"].tolist() == [5.0, 9.0, 9.0, 4.0]  # e2 sees e1 (before it), not e1 e2
    # the last event's delayed window is (10:00, 10:30] of the day before: e2 and e1
    assert got["hi_label"].tolist() == [0.0, 0.0, 0.0, 8.0]
    assert got["lo_label"].tolist() == [0.0, 0.0, 0.0, 3.0]


def test_per_row_label_times_by_hand() -> None:
    """Labels known in (t - w, t]: known exactly at t is in, exactly w before t is out, an
    unknown label time never counts; the fixed delay plays no part."""
    per_row = {"delayed": True, "known_at": "paid_at", "label": "bought"}
    fs = _only(
        _f("n", "count", "user", 60, delayed=True, known_at="paid_at"),
        _f("mean", "risk", "user", 60, **per_row),
        _f("sum", "fraud_count", "user", 60, **per_row),
        _f("top", "max", "user", 60, **per_row),
        _f("low", "min", "user", 60, **per_row),
        _f("spend", "mean_amount", "user", 60, value="spend", delayed=True, known_at="paid_at"),
        task="regression",
    )
    tx = _one_user(
        ["2025-04-01 08:00", "2025-04-01 08:30", "2025-04-01 09:00", "2025-04-01 10:00"],
        bought=[4.0, -2.0, 10.0, 1.0],
        spend=[1.0, 3.0, 5.0, 7.0],
        paid_at=pd.to_datetime(
            ["2025-04-01 09:00", "2025-04-01 10:00", pd.NaT, "2025-04-01 11:00"]
        ),
    )
    got = build_features(tx, label_delay_days=7, use_case=fs)
    # at 09:00: e0 (known exactly at 09:00) is in; at 10:00: e0 (known exactly 60 min before)
    # is out, e1 (known exactly at 10:00) is in; e2 never counts; e3 is known later
    assert got["n"].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert got["mean"].tolist() == [0.0, 0.0, 4.0, -2.0]
    assert got["sum"].tolist() == [0.0, 0.0, 4.0, -2.0]
    assert got["top"].tolist() == [0.0, 0.0, 4.0, -2.0]
    assert got["low"].tolist() == [0.0, 0.0, 4.0, -2.0]
    assert got["spend"].tolist() == [0.0, 0.0, 1.0, 3.0]


def test_per_row_positive_functions_by_hand() -> None:
    """days_since_* read the event times of the positives whose label is known in the window
    (newest / oldest by event time, not by label time); none: window + known_within, in days."""
    per_row = {"delayed": True, "known_at": "paid_at", "label": "bought"}
    fs = _only(
        _f("since", "days_since_fraud", "user", 720, **per_row),
        _f("first", "days_since_first_fraud", "user", 720, **per_row),
        _f("pos_spend", "fraud_mean_amount", "user", 720, value="spend", **per_row),
    )
    tx = _one_user(
        ["2025-04-01 00:00", "2025-04-01 06:00", "2025-04-01 12:00", "2025-04-02 00:00"],
        bought=[1, 1, 0, 0],
        spend=[2.0, 6.0, 100.0, 0.0],
        # the older positive's label comes last
        paid_at=pd.to_datetime(
            ["2025-04-01 20:00", "2025-04-01 12:30", "2025-04-01 13:00", pd.NaT]
        ),
    )
    got = build_features(tx, use_case=fs)
    empty = (720 * MINUTE_NS + DAY_NS) / DAY_NS  # 1.5 days
    # at 12:00 no label is known yet; at 00:00 the next day (12:00, 00:00] holds all three
    assert got["since"].tolist() == [empty, empty, empty, 0.75]  # newest positive: 06:00
    assert got["first"].tolist() == [empty, empty, empty, 1.0]  # oldest positive: 00:00
    assert got["pos_spend"].tolist() == [0.0, 0.0, 0.0, 4.0]


def test_asof_edges_by_hand() -> None:
    """A row known exactly at t is in, an age of exactly max_age is out, the newest known row
    wins even when its value is null (then the default), and at a tie the later table row."""
    fs = _only(
        _f("wind", "asof", None, 30, value="wind", table="weather", join=(("site", "site"),),
           default=-1.0),
    )  # fmt: skip
    weather = pd.DataFrame(
        {
            "site": ["n", "n", "n", "n", "s"],
            "obs_at": pd.to_datetime(
                [
                    "2025-04-01 09:50",
                    "2025-04-01 10:20",
                    "2025-04-01 10:20",
                    "2025-04-01 11:00",
                    "2025-04-01 09:00",
                ]
            ),  # fmt: skip
            "wind": [1.0, 2.0, 3.0, None, 9.0],
        }
    )
    # known 10 minutes after obs_at: 10:00, 10:30 (twice: the second row wins), 11:10
    tx = _one_user(
        ["2025-04-01 09:59", "2025-04-01 10:00", "2025-04-01 10:29", "2025-04-01 10:30",
         "2025-04-01 11:00", "2025-04-01 11:10", "2025-04-01 10:00"],
        site=["n", "n", "n", "n", "n", "n", "s"],
    )  # fmt: skip
    got = build_features(tx, use_case=fs, side_tables={"weather": weather})
    # 11:00: the 10:30 row is exactly 30 min old (out); 11:10: the newest row's wind is null;
    # site s: its only row is 50 min old
    assert got["wind"].tolist() == [-1.0, 1.0, 1.0, 3.0, -1.0, -1.0, -1.0]


def test_asof_with_two_keys_int_and_string() -> None:
    fs = _only(
        _f("score", "asof", None, 60, value="score", table="owners",
           join=(("shop", "shop"), ("user", "owner")), default=0.5),
    )  # fmt: skip
    owners = pd.DataFrame(
        {
            "shop": [3, 3, 7, 3],
            "owner": ["ann", "bo", "ann", None],  # a null key never matches
            "since": pd.to_datetime(["2025-04-01 09:30"] * 3 + ["2025-04-01 09:45"]),
            "score": [1.0, 2.0, 3.0, 99.0],
        }
    )
    tx = _one_user(["2025-04-01 10:00"] * 4, shop=[3, 3, 7, 7], user=["ann", "bo", "ann", "bo"])
    got = build_features(tx, use_case=fs, side_tables={"owners": owners})
    assert got["score"].tolist() == [1.0, 2.0, 3.0, 0.5]


def test_unknown_label_times_are_allowed_other_nulls_are_not() -> None:
    fs = _only(_f("n", "count", "user", 60, delayed=True, known_at="paid_at"))
    tx = _one_user(["2025-04-01 10:00", "2025-04-01 10:05"])
    assert build_features(tx, use_case=fs)["n"].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="user: contains nulls"):
        build_features(tx.assign(user=[None, "ann"]), use_case=fs)
    with pytest.raises(ValueError, match="paid_at: must be a datetime column"):
        build_features(tx.assign(paid_at="soon"), use_case=fs)


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (None, "kinds: side table 'weather' is missing"),
        ({"owners": pd.DataFrame()}, "kinds: side table 'weather' is missing"),
        (
            {"weather": pd.DataFrame({"site": ["n"], "obs_at": pd.to_datetime(["2025-04-01"])})},
            r"side table 'weather': missing column\(s\) \['wind'\]",
        ),
        (
            {"weather": pd.DataFrame({"site": ["n"], "obs_at": ["2025-04-01"], "wind": [1.0]})},
            "side table 'weather': obs_at: must be a datetime column",
        ),
        (
            {
                "weather": pd.DataFrame(
                    {"site": ["n"], "obs_at": pd.to_datetime(["2025-04-01"]), "wind": ["calm"]}
                )
            },
            "side table 'weather': wind: must be numeric",
        ),
    ],
)
def test_bad_side_tables_name_table_and_column(side, message: str) -> None:
    fs = _only(
        _f("wind", "asof", None, 30, value="wind", table="weather", join=(("site", "site"),),
           default=-1.0),
    )  # fmt: skip
    with pytest.raises(ValueError, match=message):
        build_features(_one_user(["2025-04-01 10:00"]), use_case=fs, side_tables=side)


def test_join_columns_are_required_input() -> None:
    fs = _only(
        _f("wind", "asof", None, 30, value="wind", table="weather", join=(("site", "site"),),
           default=-1.0),
    )  # fmt: skip
    assert "site" in fs.input_columns
    with pytest.raises(ValueError, match=r"kinds events: missing column\(s\) \['site'\]"):
        build_features(_one_user(["2025-04-01 10:00"]).drop(columns="site"), use_case=fs)


def test_positive_share_by_label_time_is_refused() -> None:
    fs = _only(
        _f("share", "fraud_share_since_first", "user", 60, delayed=True, known_at="paid_at",
           label="bought"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="'share': fraud_share_since_first needs a fixed"):
        build_features(_one_user(["2025-04-01 10:00"]), use_case=fs)


def test_a_declared_use_case_with_the_new_kinds(tmp_path: Path) -> None:
    """Through the loader: a per-row label time, min/max, hour/weekday and an as-of join,
    with the features for some days carrying their keys."""
    data = _clicks("regression")
    data["schema"]["extras"] = {"paid_at": "datetime"}
    data["schema"]["side_tables"] = {
        "prices": {
            "keys": {"page": "string"},
            "time": "quoted_at",
            "columns": {"price": "float"},
            "known_after": "5min",
        }
    }
    data["label"] = {"column": "bought", "task": "regression", "known_at": "paid_at"}
    data["label"]["known_within"] = "1h"
    data["features"] = [
        {"kind": "row", "name": "hour", "function": "hour_of_day"},
        {"kind": "row", "name": "weekday", "function": "day_of_week"},
        {"kind": "window", "name": "user_top_spend", "entity": "user", "function": "max",
         "of": "spend", "window": "45min"},
        {"kind": "window", "name": "page_worst", "entity": "page", "function": "min",
         "of": "bought", "window": "1h", "matured": True},
        {"kind": "asof", "name": "page_price", "table": "prices", "column": "price",
         "join": {"page": "page"}, "max_age": "1h", "default": -1.0},
    ]  # fmt: skip
    folder = tmp_path / "clicks"
    folder.mkdir()
    (folder / USE_CASE_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    uc = load_use_case(folder)
    fs = feature_set(uc)
    tx = pd.DataFrame(
        {
            "click_id": ["a", "b", "c"],
            "at": pd.to_datetime(["2025-04-01 23:40", "2025-04-02 00:10", "2025-04-02 00:20"]),
            "user": ["ann", "ann", "bo"],
            "page": ["/a", "/a", "/a"],
            "spend": [3.0, 1.0, 2.0],
            "bought": [5.0, -1.0, 0.0],
            "paid_at": pd.to_datetime(["2025-04-02 00:10", "2025-04-02 00:15", pd.NaT]),
        }
    )
    prices = pd.DataFrame(
        {"page": ["/a"], "quoted_at": pd.to_datetime(["2025-04-02 00:05"]), "price": [9.5]}
    )
    out = build_features_for_days(
        tx, ["2025-04-02"], label_delay_days=1, use_case=uc, side_tables={"prices": prices}
    )
    assert list(out.columns) == ["click_id", "at", "user", "page", *fs.columns]
    assert out["click_id"].tolist() == ["b", "c"]
    assert out["hour"].tolist() == [0.0, 0.0]
    assert out["weekday"].tolist() == [2.0, 2.0]  # 2025-04-02 was a Wednesday
    assert out["user_top_spend"].tolist() == [3.0, 2.0]
    assert out["page_worst"].tolist() == [5.0, -1.0]  # a's label known at 00:10, b's at 00:15
    assert out["page_price"].tolist() == [9.5, 9.5]  # known at 00:10: exactly at b's time
