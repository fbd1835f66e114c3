"""Dagster definitions for the warehouse stage."""

import dagster as dg

defs = dg.Definitions()
