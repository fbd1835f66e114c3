"""Dagster definitions for the training stage."""

import dagster as dg

defs = dg.Definitions()
