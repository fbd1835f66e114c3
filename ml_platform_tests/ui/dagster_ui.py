"""Drive ``dagster dev`` and its UI the way a person does: shared by the browser test and
``docs/screenshots.py``.

``DagsterDev`` starts ``dagster dev`` (webserver + daemon + code server) in its own session
and always stops the whole session: a ``dagster dev`` started from a background shell has
SIGINT ignored and then ignores SIGTERM too, so the process is exec'd through a tiny
launcher that restores the default handlers, interrupted as a group, and anything still
alive after a grace period is killed. The page helpers below only click and read what a
user sees; GraphQL is used to wait for readiness and to cross-check what the UI shows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[2]
WORKSPACE = PROJECT_DIR / "workspace.yaml"
LOCATION = "ml_platform"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: A small simulator (~1,000 transactions and ~10 frauds a day) and a week of partitions:
#: enough for every page and fast to compute. With a one-day label delay the week holds a
#: 3-day training window, the gap and a 2-day validation window, each with frauds, so the
#: population (``populate.py``) can train a champion. One LightGBM thread: it trains next to
#: ``dagster dev`` and Chromium on two cores, where a second OpenMP thread only waits. The
#: daemon evaluates the retraining sensor once at start-up and not again during a test.
UI_SETTINGS = {
    "ML_PLATFORM_SIM_N_CUSTOMERS": "500",
    "ML_PLATFORM_SIM_N_TERMINALS": "1000",
    "ML_PLATFORM_START_DATE": "2025-04-01",
    "ML_PLATFORM_END_DATE": "2025-04-07",
    "ML_PLATFORM_LABEL_DELAY_DAYS": "1",
    "ML_PLATFORM_TRAIN_DAYS": "3",
    "ML_PLATFORM_VALID_DAYS": "2",
    "ML_PLATFORM_TRAIN_THREADS": "1",
    "ML_PLATFORM_SENSOR_INTERVAL_SECONDS": "3600",
}
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DAGSTER_DISABLE_TELEMETRY": "true",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
}
# exec dagster with default SIGINT/SIGTERM even when our own parent ignores them, and ask
# Linux to interrupt it if the test process dies without stopping it (PR_SET_PDEATHSIG).
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGINT)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)
TERMINAL_RUN_STATES = {"SUCCESS", "FAILURE", "CANCELED"}


def ui_env(base_dir: Path, **overrides: str) -> dict[str, str]:
    """Environment for an isolated platform under ``base_dir`` (data + empty DAGSTER_HOME)."""
    home = base_dir / "dagster_home"
    # Nothing of the caller's platform configuration leaks in (profile, source, dates...).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_PLATFORM_")}
    env.update(TELEMETRY_OFF)
    env.update(UI_SETTINGS)
    env.update(
        {
            "ML_PLATFORM_DATA_DIR": str(base_dir / "data"),
            "ML_PLATFORM_DAGSTER_HOME": str(home),
            "DAGSTER_HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            # dbt and dagster from this environment even when not started via `uv run`.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    env.update(overrides)
    return env


# --- what the definitions contain --------------------------------------------------------


@dataclass(frozen=True)
class AssetInfo:
    key: tuple[str, ...]
    group: str
    description: str
    materializable: bool
    partitions: str | None
    partition_keys: tuple[str, ...]
    parents: tuple[str, ...]
    checks: tuple[str, ...]

    @property
    def name(self) -> str:
        return "/".join(self.key)

    @property
    def url_path(self) -> str:
        return "/assets/" + "/".join(self.key)


@dataclass(frozen=True)
class LaunchPlan:
    """What the test materializes from the UI: ``assets`` for one ``partition``, launched
    from the group page (``group``) or, if the group mixes partitionings, the asset page."""

    group: str | None
    assets: tuple[AssetInfo, ...]
    partition: str
    inspect: AssetInfo  # the asset whose page is read afterwards (row count + checks)

    @property
    def launch_url(self) -> str:
        if self.group is not None:
            return f"/locations/{LOCATION}/asset-groups/{self.group}"
        return self.assets[0].url_path


@dataclass
class Inventory:
    assets: list[AssetInfo]
    #: Sensors and schedules: ``{"kind": "sensors"|"schedules", "name", "default_status"}``.
    automations: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Inventory:
        assets = [
            AssetInfo(
                key=tuple(a["key"]),
                group=a["group"],
                description=a["description"],
                materializable=a["materializable"],
                partitions=a["partitions"],
                partition_keys=tuple(a["partition_keys"]),
                parents=tuple(a["parents"]),
                checks=tuple(a["checks"]),
            )
            for a in data["assets"]
        ]
        return cls(assets=assets, automations=list(data.get("automations", [])))

    @property
    def groups(self) -> list[str]:
        return sorted({a.group for a in self.assets})

    def in_group(self, group: str) -> list[AssetInfo]:
        return [a for a in self.assets if a.group == group]

    def launch_plan(self, preferred_root: str = "fraud_raw_events") -> LaunchPlan:
        """One partition of the ingestion entry point (``fraud_raw_events``), or of the first
        partitioned root asset, together with its group when the group is uniformly
        partitioned; the asset read afterwards is the one in the launch with most checks."""
        roots = [a for a in self.assets if a.materializable and a.partition_keys and not a.parents]
        if not roots:
            raise AssertionError("no partitioned root asset to materialize from the UI")
        root = next((a for a in roots if a.name == preferred_root), roots[0])
        members = self.in_group(root.group)
        uniform = all(a.materializable and a.partitions == root.partitions for a in members)
        assets = tuple(members) if uniform else (root,)
        keys = root.partition_keys
        partition = keys[1] if len(keys) > 1 else keys[0]  # one day of several
        inspect = max(assets, key=lambda a: (len(a.checks), a is not root))
        return LaunchPlan(
            group=root.group if uniform else None,
            assets=assets,
            partition=partition,
            inspect=inspect,
        )


def describe_definitions(
    env: dict[str, str],
    *,
    module: str = "ml_platform.definitions",
    prepare: bool = True,
    timeout: float = 180,
) -> Inventory:
    """Run ``ml-platform prepare`` and describe the definitions in a fresh interpreter."""
    cmd = [sys.executable, "-m", "ml_platform_tests.ui.inventory", "--module", module]
    if prepare:
        cmd.append("--prepare")
    proc = subprocess.run(
        cmd, env=env, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"describing {module} failed:\n{proc.stderr[-4000:]}")
    last = proc.stdout.strip().splitlines()[-1]
    return Inventory.from_json(json.loads(last))


# --- the dagster dev process -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (``dagster dev`` and every child it spawned)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


class _SessionProcess:
    """A child in its own session (through the launcher), its output in ``log_path``."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None

    def _spawn(self, cmd: list[str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=PROJECT_DIR,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> list[int]:
        return _session_members(self.proc.pid) if self.proc else []


class DagsterDev(_SessionProcess):
    """``dagster dev`` on a free port; use as a context manager so it always stops."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        workspace: Path = WORKSPACE,
        port: int | None = None,
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.workspace = workspace
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.leftover: list[int] = []  # processes that needed SIGKILL at stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DagsterDev:
        dagster = str(Path(sys.executable).with_name("dagster"))
        cmd = [sys.executable, "-c", _LAUNCHER, dagster, "dev", "-w", str(self.workspace)]
        cmd += ["-h", "127.0.0.1", "-p", str(self.port)]
        self._spawn(cmd)
        return self

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 10) -> dict:
        import httpx

        resp = httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=timeout,
        )
        resp.raise_for_status()
        body = resp.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def wait_ready(self, timeout: float) -> float:
        """Block until the code location has loaded; return the seconds waited."""
        import httpx

        query = """{ workspaceOrError { ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
        } } } }"""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited early:\n{self.log_tail()}")
            try:
                entries = self.graphql(query, timeout=3)["workspaceOrError"]["locationEntries"]
            except (httpx.HTTPError, RuntimeError, KeyError, TypeError):
                entries = []
            entry = next((e for e in entries if e["name"] == LOCATION), None)
            if entry and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    raise RuntimeError(f"code location failed to load: {loaded['message']}")
                return time.monotonic() - t0
            time.sleep(0.25)
        raise TimeoutError(f"dagster dev not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def skip_first_run_popup(self) -> None:
        """Dismiss the one-time "Join the Dagster community" dialog shown on localhost, as
        the "Skip" button would, so it cannot cover what the test clicks or photographs."""
        self.graphql("mutation { setNuxSeen }")

    def stop(self, grace: float = 15) -> None:
        """Interrupt every process of the session, give them ``grace`` seconds (a clean
        shutdown takes ~12 s, mostly the code server), then kill what is left."""
        if self.proc is None:
            return
        sid = self.proc.pid
        for pid in _session_members(sid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + grace
        while _session_members(sid) and time.monotonic() < deadline:
            self.proc.poll()  # reap dagster dev itself as soon as it exits
            time.sleep(0.1)
        self.leftover = _session_members(sid)
        for pid in self.leftover:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while (left := _session_members(sid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            raise RuntimeError(f"dagster dev left processes behind: {left}")

    def __enter__(self) -> DagsterDev:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- GraphQL cross-checks ---------------------------------------------------------

    def run_status(self, run_id: str) -> str:
        data = self.graphql(
            "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }",
            {"id": run_id},
        )["runOrError"]
        return data.get("status", data["__typename"])

    def latest_row_count(self, asset: AssetInfo, partition: str) -> int | None:
        data = self.graphql(
            """query($key: AssetKeyInput!, $p: [String!]) { assetOrError(assetKey: $key) {
                ... on Asset { assetMaterializations(limit: 1, partitions: $p) {
                    metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }""",
            {"key": {"path": list(asset.key)}, "p": [partition]},
        )["assetOrError"]
        mats = data.get("assetMaterializations") or []
        for entry in mats[0]["metadataEntries"] if mats else []:
            if entry["label"] == "dagster/row_count":
                return entry.get("intValue")
        return None

    def latest_metadata(self, key: tuple[str, ...], partition: str | None = None) -> dict:
        """Label -> value of the latest materialization's metadata (of ``partition``)."""
        data = self.graphql(
            """query($key: AssetKeyInput!, $p: [String!]) { assetOrError(assetKey: $key) {
                ... on Asset { assetMaterializations(limit: 1, partitions: $p) {
                    metadataEntries { __typename label
                        ... on UrlMetadataEntry { url }
                        ... on PathMetadataEntry { path }
                        ... on TextMetadataEntry { text }
                        ... on FloatMetadataEntry { floatValue }
                        ... on IntMetadataEntry { intValue }
                        ... on BoolMetadataEntry { boolValue } } } } } }""",
            {"key": {"path": list(key)}, "p": [partition] if partition else None},
        )["assetOrError"]
        mats = data.get("assetMaterializations") or []
        values: dict[str, Any] = {}
        for entry in mats[0]["metadataEntries"] if mats else []:
            fields = [v for k, v in entry.items() if k not in ("__typename", "label")]
            values[entry["label"]] = fields[0] if fields else None
        return values


class Population(_SessionProcess):
    """``populate.py`` in its own session: the champion and drift report of the platform.

    Started next to ``dagster dev`` (same environment, same DAGSTER_HOME and data dir), it
    prints one line per finished step to its log and its result as the last JSON line.
    """

    def __init__(self, env: dict[str, str], log_path: Path, *, sensor_url: str | None) -> None:
        self.env = env
        self.log_path = log_path
        self.sensor_url = sensor_url
        self.proc: subprocess.Popen | None = None

    def start(self) -> Population:
        # Through the launcher too: interrupted by Linux if the test process dies.
        cmd = [sys.executable, "-c", _LAUNCHER, sys.executable]
        cmd += ["-m", "ml_platform_tests.ui.populate"]
        if self.sensor_url:
            cmd += ["--sensor-url", self.sensor_url]
        self._spawn(cmd)
        return self

    def wait_step(self, step: str, timeout: float) -> float:
        """Block until the step ``step`` (e.g. ``ingest``) is done; return the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if f"step done: {step}" in self.log_tail(chars=1_000_000):
                return time.monotonic() - t0
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"population ended before {step}:\n{self.log_tail()}")
            time.sleep(0.2)
        raise TimeoutError(f"population: {step} not done after {timeout:.0f}s")

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the end and return the JSON result (seconds per step, champion...)."""
        if self.proc is None:
            raise RuntimeError("population not started")
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"population still running after {timeout:.0f}s") from None
        if code != 0:
            raise RuntimeError(f"population failed ({code}):\n{self.log_tail()}")
        lines = [ln for ln in self.log_tail().splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"population printed no result:\n{self.log_tail()}")
        return json.loads(lines[-1])

    def stop(self) -> None:
        """Kill the population (and anything it spawned) if it is still running."""
        if self.proc is None:
            return
        for pid in _session_members(self.proc.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while (left := _session_members(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            raise RuntimeError(f"population left processes behind: {left}")


@contextmanager
def browser_page(width: int = 1440, height: int = 900) -> Iterator[Any]:
    """A page in Debian's headless Chromium (no browser download by Playwright)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: run `make install-browser`")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


# --- what a user does in the UI ----------------------------------------------------------


def open_asset_graph(page: Any, base_url: str, groups: list[str]) -> dict[str, Any]:
    """Open the global asset lineage and return the graph node of every group."""
    page.goto(f"{base_url}/asset-groups")
    nodes = {}
    for group in groups:
        # A collapsed group is a box titled with the group name (tooltip = the name).
        node = page.locator(f'[class*="GroupNode"] [data-tooltip="{group}"]').first
        node.wait_for(state="visible")
        nodes[group] = node
    return nodes


def launch_partition(
    page: Any, base_url: str, plan: LaunchPlan, before_launch: Callable[[Any], None] | None = None
) -> str:
    """Click "Materialize…", type one partition key, launch; return the run id.
    ``before_launch(page)`` runs with the filled-in dialog open (screenshots)."""
    page.goto(base_url + plan.launch_url)
    page.locator("button").filter(has_text=re.compile(r"^Materialize")).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Partition selection").wait_for()
    keys = dialog.get_by_placeholder(re.compile(r"^ex: "))
    keys.fill(plan.partition)
    keys.press("Enter")
    launch = dialog.locator("button").filter(has_text="Launch 1 run")
    launch.wait_for()
    if before_launch is not None:
        before_launch(page)
    launch.click()
    # A toast confirms the launch; its "View" link opens the run page.
    toast = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}"))
    toast.wait_for()
    view = page.get_by_role("button", name="View", exact=True)
    view.or_(page.get_by_role("link", name="View", exact=True)).first.click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    return page.url.rsplit("/runs/", 1)[1].split("?")[0]


def wait_for_run(page: Any, dev: DagsterDev, run_id: str, timeout: float) -> str:
    """Watch the run page until the run ends; return the status the UI shows."""
    t0 = time.monotonic()
    status = ""
    while time.monotonic() - t0 < timeout:
        status = dev.run_status(run_id)
        if status in TERMINAL_RUN_STATES:
            break
        time.sleep(0.5)
    if status not in TERMINAL_RUN_STATES:
        raise TimeoutError(f"run {run_id} still {status} after {timeout:.0f}s")
    shown = {"SUCCESS": "Success", "FAILURE": "Failure", "CANCELED": "Canceled"}[status]
    page.get_by_text(shown, exact=True).first.wait_for()
    return shown


def read_row_count(page: Any, base_url: str, asset: AssetInfo) -> int:
    """The "Row count" of the latest materialization on the asset's overview page."""
    page.goto(base_url + asset.url_path)
    value = page.get_by_text("Row count", exact=True).locator("xpath=following-sibling::*[1]")
    value.wait_for()
    return int(value.inner_text().strip().replace(",", ""))


def read_check_results(page: Any, base_url: str, asset: AssetInfo) -> dict[str, str]:
    """Each check's latest status as listed on the asset's "Checks" tab."""
    page.goto(f"{base_url}{asset.url_path}?view=checks")
    page.get_by_text(re.compile(r"^Checks \(\d+\)$")).wait_for()
    results = {}
    search = page.get_by_placeholder("Filter checks")
    for name in asset.checks:
        search.fill(name)  # the list is virtualised: filter so the row is rendered
        row = page.locator('[class*="checkRow"]').filter(has=page.locator(f'[title="{name}"]'))
        row.first.wait_for()
        lines = [ln.strip() for ln in row.first.inner_text().splitlines() if ln.strip()]
        results[name] = lines[-1] if lines else ""
    search.fill("")
    return results


def read_catalog_descriptions(page: Any, base_url: str, assets: list[AssetInfo]) -> dict[str, str]:
    """The text the catalog shows in each asset's row (its name and description)."""
    # The catalog table is virtualised: a tall window renders every row at once.
    page.set_viewport_size({"width": 1440, "height": 300 + 90 * len(assets)})
    page.goto(f"{base_url}/assets")
    shown = {}
    for asset in assets:
        link = page.locator(f'a[href="{asset.url_path}"]').first
        link.wait_for()
        row = link.locator("xpath=ancestor::*[contains(@class, 'row')][1]")
        shown[asset.name] = row.inner_text() if row.count() else ""
    page.set_viewport_size({"width": 1440, "height": 900})
    return shown


def read_automation_switches(
    page: Any, base_url: str, expected: dict[tuple[str, str], bool], timeout: float = 15
) -> dict[tuple[str, str], bool]:
    """The on/off switch of each ``(kind, name)`` sensor or schedule on the Automation page.
    Switches render before the states load, so each gets ``timeout`` seconds to reach its
    ``expected`` state; the state seen last is returned."""
    page.set_viewport_size({"width": 1440, "height": 400 + 70 * len(expected)})
    page.goto(f"{base_url}/automation")
    states = {}
    for (kind, name), want in expected.items():
        row = page.locator("[data-index]").filter(
            has=page.locator(f'a[href="/locations/{LOCATION}/{kind}/{name}"]')
        )
        switch = row.locator('label[class*="formatSwitch"] input').first
        switch.wait_for(state="attached")
        deadline = time.monotonic() + timeout
        while (state := switch.is_checked()) != want and time.monotonic() < deadline:
            time.sleep(0.25)
        states[(kind, name)] = state
    page.set_viewport_size({"width": 1440, "height": 900})
    return states


def read_asset_metadata(
    page: Any, base_url: str, asset: AssetInfo, keys: list[str]
) -> dict[str, dict[str, str | None]]:
    """Text and link target of each of ``keys`` in the "Metadata" table of the asset's
    overview page (the latest materialization): ``{key: {"text": ..., "href": ...}}``."""
    page.goto(base_url + asset.url_path)
    page.get_by_text("Metadata", exact=True).first.wait_for()
    shown: dict[str, dict[str, str | None]] = {}
    for key in keys:
        row = page.locator(f'xpath=//tr[td[1][normalize-space()="{key}"]]').first
        row.wait_for()
        value = row.locator("td").last
        links = value.locator("a[href]")
        shown[key] = {
            "text": value.inner_text().strip(),
            "href": links.first.get_attribute("href") if links.count() else None,
        }
    return shown


def open_drift_report(page: Any, href: str, column: str | None = None) -> dict[str, str]:
    """Open an Evidently drift report from the link the UI shows; return its headline, the
    drift summary sentence and, if ``column`` is given, that column's row of the drift table.

    Chromium refuses to follow a ``file://`` link from an ``http://`` page (a click does
    nothing), so the link's target is opened the way a user pastes it into the address bar.
    """
    page.goto(href)
    title = page.get_by_text(re.compile(r"^Dataset Drift$")).first
    title.wait_for()
    summary = page.get_by_text(re.compile(r"^Drift is (not )?detected for")).first
    seen = {"title": title.inner_text().strip(), "summary": summary.inner_text().strip()}
    if column is not None:
        page.get_by_placeholder("Search").fill(column)  # the table shows 10 rows a page
        row = page.locator("tr").filter(has=page.get_by_text(column, exact=True)).first
        row.wait_for()
        seen["row"] = " ".join(row.inner_text().split())
    return seen
