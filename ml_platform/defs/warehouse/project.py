"""The dbt project, alone in its module (dagster-dbt's prepare-and-package imports it).

Outside ``dagster dev`` the manifest must exist before ``@dbt_assets`` is defined:
:func:`prepare_dbt_manifest` runs ``dbt parse`` when ``target/manifest.json`` is missing or
older than any project file. ``ml-platform prepare`` (``make dev``, the demo) calls it, and
building the warehouse definitions calls it too, so a clean checkout still loads (~5 s once).
It also re-parses when the dbt environment (warehouse and lake paths, target) changed, so the
saved partial parse matches and each ``dbt build`` skips its own full parse. Before that,
:func:`generate_use_case_models` writes every use case's models from its declaration
(``ml_platform.defs.warehouse.generate``): a changed declaration makes the manifest stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from dagster_dbt import DbtProject

from ml_platform.defs.warehouse.dbt_env import DBT_PROJECT_DIR, dbt_env, dbt_environment
from ml_platform.settings import Settings, get_settings

#: Files whose change makes the manifest stale.
_SOURCE_GLOBS = ("dbt_project.yml", "profiles.yml", "models/**/*", "macros/**/*", "tests/**/*")

warehouse_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
_ENV_STAMP = warehouse_project.manifest_path.with_name("ml_platform_env.json")


def manifest_is_stale(settings: Settings | None = None) -> bool:
    """True when the manifest is missing, parsed for another environment (of ``settings``,
    default the current ones), or older than a model, macro, test or config file."""
    manifest = warehouse_project.manifest_path
    if not manifest.exists() or not _ENV_STAMP.exists():
        return True
    try:
        stamp = json.loads(_ENV_STAMP.read_text())
    except (OSError, ValueError):  # gone or being replaced by another process: parse again
        return True
    if stamp != dbt_env(settings or get_settings()):
        return True
    built = manifest.stat().st_mtime
    return any(
        p.is_file() and p.stat().st_mtime > built
        for pattern in _SOURCE_GLOBS
        for p in DBT_PROJECT_DIR.glob(pattern)
    )


def generate_use_case_models(settings: Settings | None = None) -> list[Path]:
    """Write the models of every use case of ``settings`` (unchanged files are kept)."""
    from ml_platform.defs.warehouse.generate import generate_models
    from ml_platform.use_cases import load_use_cases
    from ml_platform.use_cases.loader import use_case_roots

    settings = settings or get_settings()
    use_cases = load_use_cases(use_case_roots(settings.use_case_dirs)).values()
    return generate_models(use_cases, settings.label_delay_days)


def prepare_dbt_manifest(force: bool = False, settings: Settings | None = None) -> Path:
    """Generate the use cases' models, then run ``dbt parse`` if the manifest is missing or
    stale; return the manifest path."""
    settings = settings or get_settings()
    generate_use_case_models(settings)
    if force or manifest_is_stale(settings):
        with dbt_environment(settings) as env:
            # dagster-dbt's preparer guards against concurrent parses (code servers).
            warehouse_project.preparer.prepare(warehouse_project)
        from ml_platform.defs.warehouse.generate import write_atomically

        write_atomically(_ENV_STAMP, json.dumps(env, sort_keys=True))
        # dagster-dbt caches a manifest per path for the process: drop the one just replaced
        from dagster_dbt.dbt_manifest import read_manifest_path

        read_manifest_path.cache_clear()
    return warehouse_project.manifest_path
