"""Static validation of every file in deploy/ (Docker and a cluster are not available).

Each file is read the way its tool reads it: the Dagster instance config through Dagster's
own config schema, Kubernetes manifests against the API schemas (kubernetes-validate,
strict: unknown fields fail), compose through interpolation + a schema of the Compose
Specification fields, the bentofile through BentoML's own build-config loader, Helm values
against the chart's structure. Cross-file consistency (ports, names, env variables that
must be real settings, pinned versions equal to uv.lock) is checked too.
"""

from __future__ import annotations

import ast
import re
import tomllib
from importlib import metadata
from importlib.util import find_spec
from typing import Any

import pytest
import yaml

from ml_platform.settings import PROJECT_DIR, Settings
from ml_platform_tests.production import deploy_checks

pytestmark = pytest.mark.production

DEPLOY = PROJECT_DIR / "deploy"
K8S_VERSION = "1.30.0"

#: Environment variables deploy files may set that are not ML_PLATFORM_* settings.
THIRD_PARTY_ENV = {
    "DAGSTER_HOME",
    "DO_NOT_TRACK",
    "MLFLOW_DISABLE_TELEMETRY",
    "BENTOML_DO_NOT_TRACK",
    "DAGSTER_DISABLE_TELEMETRY",
    "DBT_SEND_ANONYMOUS_USAGE_STATS",
    "BENTOML_PORT",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
}


def _yaml(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


def _check_env_names(names: set[str], where: str) -> None:
    """Every ML_PLATFORM_* variable must be a real settings field (catches typos)."""
    fields = {f"ML_PLATFORM_{n.upper()}" for n in Settings.model_fields}
    unknown = sorted(n for n in names if n not in fields and n not in THIRD_PARTY_ENV)
    assert not unknown, f"{where}: unknown environment variable(s) {unknown}"


def _lock_versions() -> dict[str, str]:
    lock = tomllib.loads((PROJECT_DIR / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"]}


# --- Dagster instance -------------------------------------------------------------------
def test_production_dagster_yaml_passes_dagster_config_schema(tmp_path, monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_postgres.utils import pg_config, pg_url_from_config

    from ml_platform.runtime import dagster_env, dagster_yaml_text

    s = Settings(profile="production", pg_dagster_db="dagster_x")
    for key, value in dagster_env(s).items():
        monkeypatch.setenv(key, value)
    (tmp_path / "dagster.yaml").write_text(dagster_yaml_text(s))
    config, _ = dagster_instance_config(str(tmp_path))
    # every connection detail is an env: reference, resolved from the settings
    raw = config["storage"]["postgres"]
    env_refs = {v["env"] for v in raw["postgres_db"].values() if isinstance(v, dict)}
    assert env_refs == set(dagster_env(s)), "dagster.yaml reads exactly what runtime exports"
    resolved = process_config(pg_config(), raw)
    assert resolved.success, resolved.errors
    # Dagster connects to the very URL the settings describe (scheme psycopg2 included)
    assert pg_url_from_config(resolved.value) == s.postgres_url("dagster_x")
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 1
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["telemetry"]["enabled"] is False


def test_embedded_dagster_yaml_passes_dagster_config_schema(tmp_path):
    from dagster._core.instance.config import dagster_instance_config

    from ml_platform.runtime import dagster_yaml_text

    (tmp_path / "dagster.yaml").write_text(dagster_yaml_text(Settings(profile="embedded")))
    config, _ = dagster_instance_config(str(tmp_path))
    assert "storage" not in config  # SQLite under DAGSTER_HOME
    assert config["concurrency"]["pools"]["default_limit"] == 1


def test_ensure_dagster_home_switches_profile_but_keeps_a_users_file(tmp_path, monkeypatch):
    from ml_platform.runtime import MANAGED_MARKER, ensure_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = ensure_dagster_home(Settings(profile="embedded"))
    text = (home / "dagster.yaml").read_text()
    assert text.startswith(MANAGED_MARKER) and "postgres" not in text
    # a file without the marker is the user's: never overwritten
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    ensure_dagster_home(Settings(profile="embedded"))
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_one_setting_switches_the_profile(monkeypatch):
    for key in (
        "ML_PLATFORM_PROFILE",
        "ML_PLATFORM_ONLINE_STORE",
        "ML_PLATFORM_MLFLOW_TRACKING_URI",
    ):
        monkeypatch.delenv(key, raising=False)
    embedded = Settings()
    assert embedded.profile == "embedded" and embedded.online_store == "sqlite"
    assert embedded.tracking_uri.startswith("sqlite:///")
    prod = Settings(profile="production", pg_password="p@ss:w/rd", pg_mlflow_db="mlflow")
    assert prod.online_store == "redis"
    assert (
        prod.tracking_uri == "postgresql+psycopg2://postgres:p%40ss%3Aw%2Frd@127.0.0.1:5432/mlflow"
    )
    assert "p@ss" not in repr(prod) and "p@ss" not in str(prod.model_dump())  # masked
    explicit = Settings(
        profile="production", online_store="sqlite", mlflow_tracking_uri="http://mlflow:5000"
    )
    assert (explicit.online_store, explicit.tracking_uri) == ("sqlite", "http://mlflow:5000")


# --- Kubernetes manifests ----------------------------------------------------------------
def _k8s_docs() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_k8s_manifests_validate_against_the_kubernetes_schema():
    import kubernetes_validate

    docs = _k8s_docs()
    kinds = {d["kind"] for _, d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"} <= kinds
    for name, doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == "ml-platform", name


def test_k8s_validation_is_strict_enough_to_catch_a_typo():
    """The validator rejects an unknown field: the test above can fail."""
    import kubernetes_validate

    deployment = next(d for _, d in _k8s_docs() if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_k8s_service_probes_autoscaling_and_config_fit_together():
    docs = {d["kind"]: d for _, d in _k8s_docs()}
    dep, svc, hpa, cm = (
        docs[k] for k in ("Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap")
    )
    pod = dep["spec"]["template"]
    container = pod["spec"]["containers"][0]
    port = container["ports"][0]
    # readiness on BentoML's /readyz, on the named port the Service targets
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert svc["spec"]["ports"][0]["targetPort"] == port["name"]
    assert port["containerPort"] == Settings().serving_port
    labels = pod["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", dep["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert container["resources"]["requests"]["cpu"], "HPA on CPU needs a CPU request"
    # env comes from the ConfigMap (checked names) and a Secret (never in the repo)
    refs = {next(iter(e)): next(iter(e.values()))["name"] for e in container["envFrom"]}
    assert refs["configMapRef"] == cm["metadata"]["name"]
    assert "secretRef" in refs
    _check_env_names(set(cm["data"]), "k8s/configmap.yaml")
    assert not any("PASSWORD" in k or "TOKEN" in k for k in cm["data"]), "secrets in ConfigMap"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


# --- compose -------------------------------------------------------------------------------
def _compose(env: dict[str, str] | None = None) -> dict:
    raw = _yaml("compose.yaml")
    return deploy_checks.interpolate(
        raw, env if env is not None else {"ML_PLATFORM_PG_PASSWORD": "from-env-file"}
    )


def test_compose_file_validates_against_the_compose_schema():
    import jsonschema

    doc = _compose()
    jsonschema.validate(doc, deploy_checks.COMPOSE_SCHEMA)
    wanted = {
        "postgres",
        "redis",
        "mlflow",
        "code-location",
        "dagster-webserver",
        "dagster-daemon",
        "api",
    }
    assert wanted <= set(doc["services"])
    broken = _compose()
    broken["services"]["api"]["enviroment"] = broken["services"]["api"].pop("environment")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, deploy_checks.COMPOSE_SCHEMA)


def test_compose_needs_the_password_from_the_environment():
    """No password in the file: without the variable compose refuses to start."""
    with pytest.raises(deploy_checks.MissingVariableError, match="ML_PLATFORM_PG_PASSWORD"):
        _compose(env={})
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert deploy_checks.variables(_yaml("compose.yaml")) <= set(example), (
        ".env.example documents every variable compose reads"
    )
    assert example["ML_PLATFORM_PG_PASSWORD"] == "", "no password value in the repo"


def test_compose_services_are_wired_consistently():
    doc = _compose()
    services, volumes = doc["services"], set(doc.get("volumes") or {})
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        for dep, cond in deps.items() if isinstance(deps, dict) else []:
            assert dep in services, f"{name}: depends on unknown service {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep}: no healthcheck to wait for"
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: mounts missing {source}"
            else:
                assert source in volumes, f"{name}: volume {source} not declared"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} not on loopback"
        env = svc.get("environment") or {}
        _check_env_names(set(env), f"compose service {name}")
    # the webserver/daemon workspace points at the code location's gRPC port
    ws = _yaml("workspace.yaml")["load_from"][0]["grpc_server"]
    assert ws["host"] == "code-location"
    assert str(ws["port"]) in services["code-location"]["command"]
    assert ws["location_name"] == "ml_platform"
    assert "ml_platform.definitions" in services["code-location"]["command"]
    api = services["api"]
    assert "ml_platform.serving.service:FraudDetector" in api["command"]
    assert api["ports"] == [f"127.0.0.1:{Settings().serving_port}:{Settings().serving_port}"]
    # the instance config is the production dagster.yaml, read-only
    for name in ("code-location", "dagster-webserver", "dagster-daemon"):
        assert "./dagster.yaml:/opt/dagster/home/dagster.yaml:ro" in services[name]["volumes"]


# --- Helm values for Dagster's official chart -----------------------------------------------
#: Top-level keys of the dagster/dagster chart's values (its values.schema.json).
CHART_TOP_LEVEL = {
    "global",
    "nameOverride",
    "fullnameOverride",
    "rbacEnabled",
    "dagsterHome",
    "postgresqlSecretName",
    "imagePullSecrets",
    "computeLogManager",
    "pythonLogs",
    "dagsterWebserver",
    "dagster-user-deployments",
    "pipelineRun",
    "runLauncher",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret",
    "rabbitmq",
    "redis",
    "flower",
    "ingress",
    "dagsterDaemon",
    "busybox",
    "migrate",
    "telemetry",
    "serviceAccount",
    "retention",
    "concurrency",
    "additionalInstanceConfig",
    "scheduler",
}


def test_helm_values_fit_the_dagster_chart():
    values = _yaml("helm/values.yaml")
    assert set(values) <= CHART_TOP_LEVEL, set(values) - CHART_TOP_LEVEL
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher" and set(launcher["config"]) == {"k8sRunLauncher"}
    # external PostgreSQL, password only from the named Secret
    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"] and pg["postgresqlPassword"] == ""
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert pg["postgresqlScheme"] == "postgresql+psycopg2"
    # the code location image serves our definitions, with a pinned (not latest) tag
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["image"]["tag"] not in ("", "latest")
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("--module-name") + 1]
    assert find_spec(module) is not None, f"{module} is not importable"
    _check_env_names(set(deployment["env"]), "helm user deployment env")
    # Dagster's system images match the dagster we lock
    dagster_version = metadata.version("dagster")
    for part in ("dagsterWebserver", "dagsterDaemon"):
        assert values[part]["image"]["tag"] == dagster_version, part
    # queued runs; limits in `concurrency` only (Dagster rejects both places at once)
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    assert "maxConcurrentRuns" not in coordinator["config"]["queuedRunCoordinator"]
    conc = values["concurrency"]
    assert conc["enabled"] and conc["runs"]["maxConcurrentRuns"] >= 1
    # same pools and tag limits as the single-host dagster.yaml
    local = _yaml("dagster.yaml")["concurrency"]
    assert conc["pools"]["defaultLimit"] == local["pools"]["default_limit"]
    assert {t["key"] for t in conc["runs"]["tagConcurrencyLimits"]} == {
        t["key"] for t in local["runs"]["tag_concurrency_limits"]
    }
    assert values["telemetry"]["enabled"] is False
    # run pods see the lake: same volume on the code location and the launched runs
    k8s = launcher["config"]["k8sRunLauncher"]
    assert k8s["volumeMounts"] == deployment["volumeMounts"]


# --- bentofile + image ---------------------------------------------------------------------
def test_bentofile_loads_with_bentoml_and_pins_match_the_lock():
    from bentoml._internal.bento.build_config import BentoBuildConfig

    config = BentoBuildConfig.from_file(str(DEPLOY / "bentofile.yaml"))
    module, _, attr = config.service.partition(":")
    assert module == "ml_platform.serving.service" and attr == "FraudDetector"
    assert (PROJECT_DIR / (module.replace(".", "/") + ".py")).exists()
    assert not config.models, "models come from the MLflow registry only"
    _check_env_names(set(config.docker.env or {}), "bentofile docker.env")
    requirements = PROJECT_DIR / config.python.requirements_txt
    lock = _lock_versions()
    pins = dict(
        line.split("==")
        for line in requirements.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert {"bentoml", "mlflow", "lightgbm", "redis"} <= set(pins)
    stale = {name: (v, lock.get(name)) for name, v in pins.items() if lock.get(name) != v}
    assert not stale, f"requirements-serving.txt differs from uv.lock: {stale}"
    # the serving path must not need Dagster, dbt or Evidently
    assert not {"dagster", "dbt-core", "evidently"} & set(pins)


def test_dockerfile_builds_from_the_lock_as_non_root():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert "uv sync --locked --no-dev" in text
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _dest = line.split()
        for src in sources:
            assert (PROJECT_DIR / src).exists(), f"Dockerfile copies missing {src}"
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    # python -c snippets run at build time call functions that exist (read statically:
    # importing the warehouse package would run dbt parse)
    for module, name in re.findall(r"from (ml_platform[\w.]*) import (\w+)", text):
        source = PROJECT_DIR / (module.replace(".", "/") + ".py")
        tree = ast.parse(source.read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert name in defined, f"{module}.{name} is not defined"


# --- security basics ---------------------------------------------------------------------
_SECRET_PATTERNS = [
    re.compile(r"postgres(?:ql)?(?:\+\w+)?://[^:@/\s]+:(?!\$)[^@\s]+@"),  # URL with password
    # a key containing password/secret/token set to a literal value alone on its line
    re.compile(
        r"(?i)(?P<key>\w*(password|secret|token)\w*)['\"]?\s*[:=]\s*['\"]?"
        r"[A-Za-z0-9+/_\-]{6,}['\"]?\s*(#.*)?$"
    ),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]


def _looks_secret(line: str) -> bool:
    for pattern in _SECRET_PATTERNS:
        m = pattern.search(line)
        # `postgresqlSecretName: x` names a Secret object, it holds no value
        if m and not (m.groupdict().get("key") or "").lower().endswith("name"):
            return True
    return False


def test_no_secrets_in_deploy_files_or_code():
    roots = [DEPLOY, PROJECT_DIR / "ml_platform", PROJECT_DIR / "dbt_project"]
    files = [p for r in roots for p in r.rglob("*") if p.is_file()]
    files = [
        p
        for p in files
        if p.suffix in {".py", ".yaml", ".yml", ".sql", ".txt", ".example", ".toml", ""}
        and "target" not in p.parts
    ]
    hits = []
    for path in files:
        for n, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
            if _looks_secret(line):
                hits.append(f"{path.relative_to(PROJECT_DIR)}:{n}: {line.strip()}")
    assert not hits, "possible secrets:\n" + "\n".join(hits)


def test_secret_scan_would_catch_a_literal_password():
    assert _looks_secret("postgresql+psycopg2://mlp:hunter2secret@db:5432/dagster")
    assert _looks_secret("  password: hunter2secret")
    assert _looks_secret('postgresqlPassword: "hunter2secret"')
    assert _looks_secret("ML_PLATFORM_API_TOKEN=abcdef123456")
    assert not _looks_secret("  password: ${ML_PLATFORM_PG_PASSWORD}")
    assert not _looks_secret("  postgresqlSecretName: ml-platform-secrets")


def test_services_bind_loopback_by_default():
    s = Settings()
    assert s.serving_host == "127.0.0.1"
    assert s.api_token is None
    assert Settings(api_token="").api_token is None, "an empty token means auth off"
    makefile = (PROJECT_DIR / "Makefile").read_text()
    assert "dagster dev" in makefile and "-h 127.0.0.1" in makefile


# --- the Dask cluster of the batch work ------------------------------------------------------
#: The DaskCluster fields of the dask-kubernetes operator's CRD (customresources/templates.yaml).
DASK_CLUSTER_FIELDS = {
    "spec": ({"idleTimeout", "scheduler", "worker"}, {"scheduler", "worker"}),
    "scheduler": ({"metadata", "spec", "service"}, {"spec", "service"}),
    "worker": ({"replicas", "metadata", "spec"}, {"spec"}),
}


def _dask_cli(args: list[str]):
    """``dask scheduler|worker ARGS`` parsed by distributed's own command line."""
    from distributed.cli.dask_scheduler import main as scheduler_cli
    from distributed.cli.dask_worker import main as worker_cli

    assert args[0] == "dask" and args[1] in ("scheduler", "worker"), args
    cli = scheduler_cli if args[1] == "scheduler" else worker_cli
    ctx = cli.make_context(f"dask {args[1]}", list(args[2:]))
    assert not ctx.params.get("preload_argv"), f"unknown arguments {ctx.params['preload_argv']}"
    return ctx.params


def _bytes(quantity: str) -> int:
    """A Kubernetes or compose memory quantity (3584Mi, 3584M) in bytes."""
    from dask.utils import parse_bytes

    return parse_bytes(quantity[:-1] + "iB" if quantity.endswith("i") else quantity)


def _dask_cluster() -> dict:
    (doc,) = [d for d in yaml.safe_load_all((DEPLOY / "dask" / "daskcluster.yaml").read_text())]
    return doc


def test_daskcluster_fits_the_operator_crd_and_the_kubernetes_schemas():
    import kubernetes_validate

    doc = _dask_cluster()
    assert (doc["apiVersion"], doc["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    meta = doc["metadata"]
    assert meta["namespace"] == "ml-platform"
    for part, node in (
        ("spec", doc["spec"]),
        *((k, doc["spec"][k]) for k in ("scheduler", "worker")),
    ):
        allowed, required = DASK_CLUSTER_FIELDS[part]
        assert set(node) <= allowed and required <= set(node), (part, set(node))
    assert (
        isinstance(doc["spec"]["worker"]["replicas"], int)
        and doc["spec"]["worker"]["replicas"] >= 1
    )
    # the pod and service specs, strictly, as Kubernetes reads them once the operator
    # creates the scheduler and worker pods and the scheduler Service
    ref = {"name": meta["name"], "namespace": meta["namespace"]}
    wrapped = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": ref, "spec": doc["spec"][k]["spec"]}
        for k in ("scheduler", "worker")
    ]
    wrapped.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": ref,
            "spec": doc["spec"]["scheduler"]["service"],
        }
    )
    for manifest in wrapped:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    typo = wrapped[1]["spec"]["containers"][0]
    typo["resource"] = typo.pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrapped[1], K8S_VERSION, strict=True)


def test_dask_scheduler_workers_and_dagster_runs_fit_together():
    doc = _dask_cluster()
    name, namespace = doc["metadata"]["name"], doc["metadata"]["namespace"]
    scheduler, worker = doc["spec"]["scheduler"], doc["spec"]["worker"]
    (sched,) = scheduler["spec"]["containers"]
    (work,) = worker["spec"]["containers"]
    # the Service selects the labels the operator puts on the scheduler pod, on its ports
    service = scheduler["service"]
    assert service["selector"] == {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    named = {p["name"]: p["containerPort"] for p in sched["ports"]}
    assert {p["targetPort"] for p in service["ports"]} <= set(named)
    sched_args = _dask_cli(sched["args"])
    comm = next(p for p in service["ports"] if named[p["targetPort"]] == int(sched_args["port"]))
    # Dagster runs get the Service's address and compute=dask (real settings values)
    (deployment,) = _yaml("helm/values.yaml")["dagster-user-deployments"]["deployments"]
    env = deployment["env"]
    address = f"tcp://{name}-scheduler.{namespace}.svc.cluster.local:{comm['port']}"
    assert env["ML_PLATFORM_DASK_ADDRESS"] == address
    s = Settings(compute=env["ML_PLATFORM_COMPUTE"], dask_address=env["ML_PLATFORM_DASK_ADDRESS"])
    assert s.compute == "dask"
    # one image for runs, scheduler and workers: same code and library versions
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    assert sched["image"] == work["image"] == image
    # each worker's Dask limits fit its pod's resources
    args = _dask_cli(work["args"])
    resources = work["resources"]
    assert _bytes(args["memory_limit"]) < _bytes(resources["limits"]["memory"])
    assert int(args["nthreads"]) == int(resources["requests"]["cpu"])
    assert work["readinessProbe"]["httpGet"]["port"] in {p["name"] for p in work["ports"]}
    # the workers read and write the runs' lake
    assert work["volumeMounts"] == deployment["volumeMounts"]
    assert worker["spec"]["volumes"] == deployment["volumes"]
    _check_env_names({e["name"] for e in work.get("env", [])}, "daskcluster worker env")
    for pod in (scheduler["spec"], worker["spec"]):
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_compose_runs_the_batch_work_on_its_dask_cluster():
    services = _compose()["services"]
    scheduler, worker = services["dask-scheduler"], services["dask-worker"]
    sched_args = _dask_cli(scheduler["command"])
    address = f"tcp://dask-scheduler:{sched_args['port']}"
    for name in ("code-location", "dask-worker"):
        env = services[name]["environment"]
        assert (env["ML_PLATFORM_COMPUTE"], env["ML_PLATFORM_DASK_ADDRESS"]) == ("dask", address)
    assert (
        services["code-location"]["depends_on"]["dask-scheduler"]["condition"] == "service_healthy"
    )
    args = _dask_cli(worker["command"])
    assert args["scheduler"] == address
    assert worker["depends_on"]["dask-scheduler"]["condition"] == "service_healthy"
    limits = worker["deploy"]["resources"]["limits"]
    assert _bytes(args["memory_limit"]) < _bytes(limits["memory"])
    assert int(args["nthreads"]) == int(float(limits["cpus"]))
    assert worker["deploy"]["replicas"] >= 1
    assert "lake:/data" in worker["volumes"], "workers read and write the lake"
    for svc, port in (
        (scheduler, sched_args["dashboard_address"]),
        (worker, args["dashboard_address"]),
    ):
        assert f":{port.lstrip(':')}/health" in " ".join(svc["healthcheck"]["test"])
