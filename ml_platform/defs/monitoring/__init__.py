"""Dagster definitions for the monitoring stage."""

import dagster as dg

defs = dg.Definitions()
