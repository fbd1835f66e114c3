"""Dagster definitions for the automation stage: jobs, schedules and sensors."""

import dagster as dg

from ml_platform.defs.automation.jobs import jobs

defs = dg.Definitions(jobs=jobs)
