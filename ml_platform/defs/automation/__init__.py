"""Dagster definitions for the automation stage: jobs (later schedules and sensors)."""

import dagster as dg

from ml_platform.defs.automation.jobs import jobs
from ml_platform.defs.automation.schedules import jobs as scheduled_jobs
from ml_platform.defs.automation.schedules import schedules
from ml_platform.defs.automation.sensors import sensors

defs = dg.Definitions(jobs=[*jobs, *scheduled_jobs], schedules=schedules, sensors=sensors)
