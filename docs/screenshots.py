"""``make screenshots``: regenerate the README's Dagster UI pictures in docs/images/.

Starts a fresh ``dagster dev`` (empty DAGSTER_HOME, small simulator, a week of partitions)
and, next to it, the browser test's population (``ml_platform_tests/ui/populate.py``: the
platform's own jobs train a champion and write the last day's drift report). Then does in
headless Chromium what the README tour tells a new user to do, photographing each step: the
asset groups, the launch dialog for one partition, the finished run, the launched group's
asset graph, the asset page with its row count and checks, the automation page (sensors
and schedules), the candidate model's metrics and the Evidently drift report opened from
the fraud_drift_report asset page's link.
The pictures are outputs of this script; never edit them by hand. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))  # ml_platform_tests is not an installed package

from ml_platform_tests.ui import dagster_ui as ui  # noqa: E402

IMAGES = PROJECT_DIR / "docs" / "images"
WIDTH, HEIGHT = 1440, 900


def main() -> int:
    t0 = time.monotonic()
    IMAGES.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def shot(page, name: str) -> None:
        time.sleep(1.0)  # let the graph layout and live data settle
        page.screenshot(path=str(IMAGES / name))
        written.append(name)

    with tempfile.TemporaryDirectory(prefix="mlp-screenshots-") as tmp:
        base = Path(tmp)
        env = ui.ui_env(base)
        inventory = ui.describe_definitions(env)
        plan = inventory.launch_plan()
        assets = {a.name: a for a in inventory.assets}
        with ui.DagsterDev(env, base / "dagster-dev.log") as dev:
            population = ui.Population(env, base / "populate.log", sensor_url=dev.url)
            try:
                population.start()
                dev.wait_ready(timeout=300)
                dev.skip_first_run_popup()
                with ui.browser_page(WIDTH, HEIGHT) as page:
                    pages(page, dev, inventory, plan, population, assets, shot)
            finally:
                population.stop()

    print(
        json.dumps(
            {
                "images": [str((IMAGES / n).relative_to(PROJECT_DIR)) for n in written],
                "partition": plan.partition,
                "seconds": round(time.monotonic() - t0, 1),
            }
        )
    )
    return 0


def pages(
    page: Any,
    dev: ui.DagsterDev,
    inventory: ui.Inventory,
    plan: ui.LaunchPlan,
    population: ui.Population,
    assets: dict[str, ui.AssetInfo],
    shot: Callable[[Any, str], None],
) -> None:
    """The tour, one picture per step (``shot(page, name)``)."""
    ui.open_asset_graph(page, dev.url, inventory.groups)
    shot(page, "asset-groups.png")
    population.wait_step("ingest", timeout=300)  # the launched run is the latest one
    run_id = ui.launch_partition(
        page, dev.url, plan, before_launch=lambda p: shot(p, "launch-partition.png")
    )
    status = ui.wait_for_run(page, dev, run_id, timeout=300)
    if status != "Success":
        raise SystemExit(f"run {run_id} ended {status}:\n{dev.log_tail()}")
    page.reload()
    page.get_by_text("Success", exact=True).first.wait_for()
    shot(page, "partition-run.png")

    # The launched group's own lineage, now showing the filled partition.
    page.goto(dev.url + plan.launch_url)
    page.get_by_text(plan.inspect.name, exact=True).first.wait_for()
    shot(page, "asset-graph.png")

    ui.read_row_count(page, dev.url, plan.inspect)
    shot(page, "asset-page.png")
    if plan.inspect.checks:
        ui.read_check_results(page, dev.url, plan.inspect)
        shot(page, "asset-checks.png")

    expected = {
        (a["kind"], a["name"]): a["default_status"] == "RUNNING" for a in inventory.automations
    }
    if expected:
        ui.read_automation_switches(page, dev.url, expected)
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
        shot(page, "automation.png")

    # The population's champion: the candidate model's metrics as the UI shows them.
    population.result(timeout=600)
    keys = ["valid_average_precision", "valid_roc_auc"]
    ui.read_asset_metadata(page, dev.url, assets["fraud_candidate_model"], keys)
    heading = page.get_by_text("Metadata", exact=True).first
    heading.evaluate("e => e.scrollIntoView({block: 'start'})")  # the metadata table in view
    shot(page, "model-metrics.png")

    # The drift report, opened from the link on the fraud_drift_report asset page.
    cells = ui.read_asset_metadata(page, dev.url, assets["fraud_drift_report"], ["report_url"])
    ui.open_drift_report(page, cells["report_url"]["href"])
    shot(page, "drift-report.png")


if __name__ == "__main__":
    sys.exit(main())
