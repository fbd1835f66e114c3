"""Dagster definitions for the serving stage."""

import dagster as dg

defs = dg.Definitions()
