"""Dagster definitions for the automation stage."""

import dagster as dg

defs = dg.Definitions()
