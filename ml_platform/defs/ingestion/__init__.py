"""Dagster definitions for the ingestion stage."""

import dagster as dg

defs = dg.Definitions()
