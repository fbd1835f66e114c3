"""One ``dagster dev`` + one headless Chromium for the browser tests of this folder.

The platform under test lives in a fresh temporary directory (empty DAGSTER_HOME, small
simulator, a week of partitions), exactly what a new user gets from ``make dev``.

A drift report needs a champion, features and batch scores: ~29 s of work on the idle
2-core machine, two thirds of the 42 s the rest of the file takes. So ``populate.py`` runs
the platform's own jobs on the same DAGSTER_HOME and data dir *while* ``dagster dev``
starts and the first tests click around, and only the tests that need its result wait for
it (``populated``). Measured idle: 62 s for the whole file (population 38 s, of which 9 s
waiting for the sensor's first evaluation, see ``populate.py``) instead of ~72 s in
sequence; a second platform would add a second ``dagster dev`` start-up and its memory.
The first tests keep their meaning: what they check - descriptions, groups, a run launched
by a click, that partition's row count and checks, default sensor states - comes from the
definitions or from the UI's own run, which starts only after the population's ingestion
(so the asset page's latest materialization is the clicked one).
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ml_platform_tests import summary
from ml_platform_tests.ui import dagster_ui as ui

#: Seconds per phase of the last run, shown in pytest's terminal summary (the test's
#: budget: 90 s in all, ``dagster dev`` start-up included, on an idle 2-core machine).
TIMINGS: dict[str, float] = {}


@dataclass
class UiPlatform:
    dev: ui.DagsterDev
    population: ui.Population
    inventory: ui.Inventory
    base_dir: Path
    started: float
    timings: dict[str, float] = field(default_factory=lambda: TIMINGS)

    @property
    def url(self) -> str:
        return self.dev.url


@pytest.fixture(scope="package")
def ui_platform(session_dir: Path) -> Iterator[UiPlatform]:
    """Prepare the project, start ``dagster dev`` and stop it (and all it spawned) after.
    Files stay in the session's temp folder (not pytest's rotating one) for post-mortems."""
    started = time.monotonic()
    cpu0 = _cpu_seconds()
    base = Path(tempfile.mkdtemp(prefix="ui-platform-", dir=session_dir))
    env = ui.ui_env(base)
    inventory = ui.describe_definitions(env)
    prepared = time.monotonic() - started
    dev = ui.DagsterDev(env, base / "dagster-dev.log")
    population = ui.Population(env, base / "populate.log", sensor_url=dev.url)
    platform = UiPlatform(
        dev=dev, population=population, inventory=inventory, base_dir=base, started=started
    )
    platform.timings["prepare_and_describe_s"] = round(prepared, 1)
    try:
        dev.start()
        population.start()
        platform.timings["dagster_dev_ready_s"] = round(dev.wait_ready(timeout=240), 1)
        dev.skip_first_run_popup()
        yield platform
    finally:
        t = time.monotonic()
        population.stop()  # normally finished long before; killed if a test failed early
        dev.stop(grace=3)  # the data is throw-away: no need to wait ~12 s
        platform.timings["stop_s"] = round(time.monotonic() - t, 1)
        platform.timings["total_s"] = round(time.monotonic() - started, 1)
        # CPU of this process and every child it reaped (prepare, dagster dev, Chromium):
        # on a busy machine the wall time says little, the CPU seconds stay comparable.
        platform.timings["cpu_s"] = round(_cpu_seconds() - cpu0, 1)
        summary.add_line(f"dagster UI browser test, seconds: {platform.timings}")
    assert not dev.alive(), f"processes left after stopping dagster dev: {dev.alive()}"
    assert not population.alive(), f"processes left by the population: {population.alive()}"


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@pytest.fixture(scope="package")
def page(ui_platform: UiPlatform) -> Iterator:
    with ui.browser_page() as p:
        yield p


@pytest.fixture(scope="package")
def populated(ui_platform: UiPlatform) -> dict:
    """The population's result: the champion the registry holds and the drift report day."""
    t = time.monotonic()
    result = ui_platform.population.result(timeout=300)
    ui_platform.timings["population_wait_s"] = round(time.monotonic() - t, 1)
    ui_platform.timings["population_s"] = result["timings"]["total_s"]
    return result
