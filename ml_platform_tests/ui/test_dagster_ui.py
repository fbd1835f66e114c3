"""The Dagster UI as a user drives it, in headless Chromium against a real ``dagster dev``.

The asset groups, the asset to launch and the checks to read are discovered from the
definitions (``inventory``), so the test follows the platform as stages are added. Tests run
in file order on one server: the first-run view comes before the UI has launched anything;
the model and drift-report pages come last, once the population started next to
``dagster dev`` (see ``conftest.py``) has trained a champion and written a drift report.
"""

from __future__ import annotations

import re
import time

import pytest

from ml_platform_tests.ui import dagster_ui as ui

pytestmark = [pytest.mark.ui, pytest.mark.timeout(600)]


@pytest.fixture(scope="package")
def launched(ui_platform, page) -> dict:
    """Materialize one partition from the UI by clicking; the run's id, plan and status."""
    plan = ui_platform.inventory.launch_plan()
    # The population ingests every day of the week first; clicking after it makes this run's
    # materialization the latest one, the one the asset page shows.
    waited = ui_platform.population.wait_step("ingest", timeout=240)
    ui_platform.timings["wait_population_ingest_s"] = round(waited, 1)
    t0 = time.monotonic()
    run_id = ui.launch_partition(page, ui_platform.url, plan)
    status = ui.wait_for_run(page, ui_platform.dev, run_id, timeout=240)
    ui_platform.timings["launch_to_run_end_s"] = round(time.monotonic() - t0, 1)
    return {"plan": plan, "run_id": run_id, "status": status}


def test_first_run_catalog_describes_every_asset(ui_platform, page) -> None:
    """On an empty DAGSTER_HOME every asset says what it is: the catalog shows a description
    in each asset's row. The description comes from the definitions, not the run history, so
    the population starting next to ``dagster dev`` (its first runs may already show here)
    cannot make this pass or fail."""
    assets = ui_platform.inventory.assets
    undescribed = [a.name for a in assets if not a.description]
    assert not undescribed, f"assets without a description: {undescribed}"
    shown = ui.read_catalog_descriptions(page, ui_platform.url, assets)
    missing = []
    for asset in assets:
        first_words = " ".join(asset.description.split()[:4])
        if first_words not in " ".join(shown[asset.name].split()):
            missing.append(asset.name)
    assert not missing, f"catalog rows without their description: {missing}"


def test_asset_graph_shows_every_group(ui_platform, page) -> None:
    groups = ui_platform.inventory.groups
    assert groups, "the definitions have no assets"
    nodes = ui.open_asset_graph(page, ui_platform.url, groups)
    assert sorted(nodes) == groups
    for group, node in nodes.items():
        assert _shown_as(node.inner_text().strip(), group), (node.inner_text(), group)


def _shown_as(text: str, name: str) -> bool:
    """The graph shows ``name`` whole, or a long one shortened in the middle
    (``fligh…_monitoring``): what it shows is then the name's start and end."""
    if "…" not in text:
        return text == name
    head, tail = text.split("…", 1)
    return len(head) + len(tail) >= 6 and name.startswith(head) and name.endswith(tail)


def test_materialize_one_partition_from_the_ui(ui_platform, launched) -> None:
    plan, run_id = launched["plan"], launched["run_id"]
    assert launched["status"] == "Success", (
        f"run {run_id} ended {launched['status']}:\n{ui_platform.dev.log_tail()}"
    )
    run = ui_platform.dev.graphql(
        """query($id: ID!) { runOrError(runId: $id) { ... on Run {
            tags { key value } assetSelection { path } } } }""",
        {"id": run_id},
    )["runOrError"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags.get("dagster/partition") == plan.partition, tags
    launched_keys = sorted("/".join(k["path"]) for k in run["assetSelection"])
    assert launched_keys == sorted(a.name for a in plan.assets)


def test_asset_page_shows_row_count_and_checks(ui_platform, page, launched) -> None:
    plan = launched["plan"]
    asset = plan.inspect
    rows = ui.read_row_count(page, ui_platform.url, asset)
    recorded = ui_platform.dev.latest_row_count(asset, plan.partition)
    assert rows > 0
    assert rows == recorded, f"UI shows {rows} rows, the materialization recorded {recorded}"

    assert asset.checks, f"{asset.name} has no asset checks to read"
    results = ui.read_check_results(page, ui_platform.url, asset)
    assert set(results) == set(asset.checks)
    failed = {name: status for name, status in results.items() if status != "Succeeded"}
    assert not failed, f"{asset.name} checks not succeeded for {plan.partition}: {failed}"


def test_sensors_and_schedules_show_their_default_state(ui_platform, page) -> None:
    """Every sensor and schedule is on the Automation page, switched on iff it defaults to
    RUNNING (the retraining sensor must be live on a fresh instance)."""
    automations = ui_platform.inventory.automations
    assert automations, "the definitions have no sensors or schedules"
    expected = {(a["kind"], a["name"]): a["default_status"] == "RUNNING" for a in automations}
    assert expected.get(("sensors", "fraud_retraining_sensor")) is True, expected
    assert ui.read_automation_switches(page, ui_platform.url, expected) == expected


def _asset(ui_platform, name: str) -> ui.AssetInfo:
    found = [a for a in ui_platform.inventory.assets if a.name == name]
    assert found, f"no asset {name!r} in the definitions"
    return found[0]


def _shown(ui_platform, page, asset: ui.AssetInfo, keys: list[str]) -> dict[str, str]:
    cells = ui.read_asset_metadata(page, ui_platform.url, asset, keys)
    return {key: cell["text"] for key, cell in cells.items()}


def test_model_pages_show_the_registry_metrics(ui_platform, page, populated) -> None:
    """The candidate_model and champion_model pages show the validation metrics and the
    gate's decision that the materializations recorded and the MLflow registry holds."""
    champion = populated["champion"]

    def registry_value(metric: str):
        return pytest.approx(champion[metric], abs=6e-5)  # UI: 4 places, registry tags: 6

    candidate = _asset(ui_platform, "fraud_candidate_model")
    keys = ["model_version", "model_kind", "valid_average_precision", "valid_roc_auc"]
    shown = _shown(ui_platform, page, candidate, keys)
    recorded = ui_platform.dev.latest_metadata(candidate.key)
    assert shown["model_version"] == str(recorded["model_version"]) == champion["version"]
    assert shown["model_kind"] == recorded["model_kind"] == champion["kind"]
    for metric in ("valid_average_precision", "valid_roc_auc"):
        assert float(shown[metric]) == recorded[metric], (metric, shown, recorded)
        assert float(shown[metric]) == registry_value(metric), (metric, shown, champion)

    gate = _asset(ui_platform, "fraud_champion_model")
    keys = ["promoted", "champion_version", "challenger_average_precision"]
    shown = _shown(ui_platform, page, gate, keys)
    recorded = ui_platform.dev.latest_metadata(gate.key)
    assert shown["promoted"] == "true" and recorded["promoted"] is True
    assert shown["champion_version"] == recorded["champion_version"] == champion["version"]
    # The gate re-scores the challenger on the validation window: the same AP.
    ap = float(shown["challenger_average_precision"])
    assert ap == recorded["challenger_average_precision"]
    assert ap == registry_value("valid_average_precision")


def test_drift_report_link_opens_the_evidently_report(ui_platform, page, populated) -> None:
    """The drift_report page links the day's Evidently HTML report; following the link
    opens a data-drift report whose drift table agrees with the metadata beside the link."""
    asset, day = _asset(ui_platform, "fraud_drift_report"), populated["drift_day"]
    keys = ["report_url", "drifted_features", "reference_model_version"]
    shown = ui.read_asset_metadata(page, ui_platform.url, asset, keys)
    recorded = ui_platform.dev.latest_metadata(asset.key, day)
    href = shown["report_url"]["href"]
    assert href == recorded["report_url"], (href, recorded)
    assert href.startswith("file://") and href.endswith(f"drift_report_{day}.html"), href
    assert shown["reference_model_version"]["text"] == populated["champion"]["version"]

    drifted = [c.strip() for c in shown["drifted_features"]["text"].split(",")]
    drifted = [c for c in drifted if c and c != "-"]
    assert drifted, f"the drift day {day} has no drifted feature to follow into the report"
    report = ui.open_drift_report(page, href, column=drifted[0])
    assert report["title"] == "Dataset Drift"
    assert re.match(
        r"Drift is (not )?detected for [\d.]+% of columns \(\d+ out of \d+\)", report["summary"]
    ), report
    # the first drifted feature of the metadata is "Detected" in the report
    assert report["row"].startswith(drifted[0]), report
    assert " Detected " in f" {report['row']} " and "Not Detected" not in report["row"], report
