"""The Dagster UI as a user drives it, in headless Chromium against a real ``dagster dev``.

The asset groups, the asset to launch and the checks to read are discovered from the
definitions (``inventory``), so the test follows the platform as stages are added. Tests run
in file order on one server: the first-run view comes before anything is materialized.
"""

from __future__ import annotations

import time

import pytest

from ml_platform_tests.ui import dagster_ui as ui

pytestmark = [pytest.mark.ui, pytest.mark.timeout(600)]


@pytest.fixture(scope="package")
def launched(ui_platform, page) -> dict:
    """Materialize one partition from the UI by clicking; the run's id, plan and status."""
    plan = ui_platform.inventory.launch_plan()
    t0 = time.monotonic()
    run_id = ui.launch_partition(page, ui_platform.url, plan)
    status = ui.wait_for_run(page, ui_platform.dev, run_id, timeout=240)
    ui_platform.timings["launch_to_run_end_s"] = round(time.monotonic() - t0, 1)
    return {"plan": plan, "run_id": run_id, "status": status}


def test_first_run_catalog_describes_every_asset(ui_platform, page) -> None:
    """On an empty DAGSTER_HOME every asset says what it is: the catalog shows a description
    in each asset's row (the description comes from the definitions, not the run history)."""
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
        assert node.inner_text().strip() == group


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
    if not automations:
        pytest.skip("the definitions have no sensors or schedules yet")
    expected = {(a["kind"], a["name"]): a["default_status"] == "RUNNING" for a in automations}
    assert ui.read_automation_switches(page, ui_platform.url, expected) == expected
    # TODO(monitoring issue): open the drift_report asset page and follow its report link.
