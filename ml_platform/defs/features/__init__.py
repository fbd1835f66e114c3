"""Dagster definitions for the features stage."""

import dagster as dg

defs = dg.Definitions()
