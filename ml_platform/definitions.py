"""Dagster entry point (workspace.yaml and ``dagster dev -m`` load ``defs`` from here)."""

from ml_platform.defs import build_definitions

defs = build_definitions()
