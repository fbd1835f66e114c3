"""``ml-platform new-use-case``: the scaffold loads, its sample data passes validation and
carries signal for its declared features, and mistakes are refused without leftovers."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.cli import main
from ml_platform.data.validation import validate_events
from ml_platform.features.batch import build_features
from ml_platform.use_cases import UseCaseError, load_use_cases, resolve_settings
from ml_platform.use_cases.scaffold import scaffold_use_case
from ml_platform.use_cases.spec import camel_name


def test_new_use_case_writes_a_folder_that_loads_with_its_sample_days(tmp_path: Path, capsys):
    assert main(["new-use-case", "shop_events", "--dir", str(tmp_path), "--sample-days", "3"]) == 0
    folder = tmp_path / "shop_events"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "data",
        "sample_data.py",
        "service.py",
        "use_case.yaml",
    ]
    assert sorted(p.name for p in (folder / "data").iterdir()) == [
        "2025-01-01.csv",
        "2025-01-02.csv",
        "2025-01-03.csv",
    ]
    out = capsys.readouterr().out
    assert f"ML_PLATFORM_USE_CASE_DIRS={tmp_path}" in out
    found = load_use_cases([tmp_path])
    assert list(found) == ["shop_events"]
    uc = found["shop_events"]
    assert uc.entities == {"account": "string", "item": "string"}
    assert "ShopEvents = build_service(Path(__file__)" in (folder / "service.py").read_text()
    settings = resolve_settings(uc, environ={})
    assert settings.source_dir == folder / "data"  # relative to the folder, not the cwd
    assert (settings.start_date, settings.end_date) == (date(2025, 1, 1), date(2025, 1, 3))
    env = resolve_settings(uc, environ={"SHOP_EVENTS_SOURCE_DIR": "elsewhere"})
    assert env.source_dir == Path("elsewhere")  # a variable's path is the user's own


def test_sample_data_is_valid_and_its_declared_features_find_the_signal(tmp_path: Path):
    uc = scaffold_use_case("clicks", tmp_path, sample_days=8)
    frames = []
    for day_file in sorted((uc.folder / "data").iterdir()):
        day = date.fromisoformat(day_file.stem)
        valid, quarantined = validate_events(pd.read_csv(day_file), day, uc)
        assert quarantined.empty, quarantined.head()
        frames.append(valid)
    events = pd.concat(frames, ignore_index=True)
    feats = build_features(events, 1, use_case=uc)
    assert len(feats) == len(events) == 8 * 1500
    label = events["label"].to_numpy()
    share = feats["item_positive_share_1day"].to_numpy()
    # events on items with many known positives yesterday are positive far more often
    high, low = label[share > 0.2].mean(), label[share < 0.05].mean()
    assert high > 3 * low, (high, low)
    ratio = feats["account_amount_ratio_7day"].to_numpy()
    assert label[ratio > 3].mean() > 3 * label[ratio < 1.5].mean()
    assert np.isfinite(feats.drop(columns="event_id").to_numpy()).all()


def test_sample_data_is_deterministic(tmp_path: Path):
    a = scaffold_use_case("one", tmp_path / "a", sample_days=1)
    b = scaffold_use_case("one", tmp_path / "b", sample_days=1)
    assert (a.folder / "data" / "2025-01-01.csv").read_bytes() == (
        b.folder / "data" / "2025-01-01.csv"
    ).read_bytes()


@pytest.mark.parametrize(
    ("name", "message"),
    [("Bad-Name", "'Bad-Name': a use-case name uses lower-case"), ("9lives", "'9lives'")],
)
def test_a_bad_name_is_refused_and_writes_nothing(tmp_path: Path, name: str, message: str):
    with pytest.raises(UseCaseError, match=message):
        scaffold_use_case(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(tmp_path: Path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    assert main(["new-use-case", "taken", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["mine.txt"]


def test_class_names_follow_the_use_case_name():
    assert camel_name("shop_events") == "ShopEvents"
    assert camel_name("fraud") == "Fraud"


def test_the_scaffolded_service_has_the_use_cases_own_api(tmp_path: Path) -> None:
    """Its BentoML service is built from the folder: the request schema, the batch key and
    the answer are the use case's, the service is named after its model."""
    uc = scaffold_use_case("shop", tmp_path, sample_days=1)
    svc = uc.hook("service.py:Shop")
    assert svc.name == "shop_model"
    spec = svc.openapi_spec.asdict()
    schemas = spec["components"]["schemas"]
    request = schemas["ShopRequest"]
    assert request["required"] == ["event_id", "event_time", "account", "item", "amount"]
    assert request["properties"]["account"]["type"] == "string"
    assert request["properties"]["amount"]["minimum"] == 0
    batch = spec["paths"]["/predict_batch"]["post"]["requestBody"]["content"]
    assert batch["application/json"]["schema"]["required"] == ["events"]
    assert {"shop_probability", "is_shop", "threshold"} <= set(schemas["Prediction"]["properties"])
