"""Dagster definitions for the monitoring stage (group "monitoring").

Drift, serving skew, labeled performance and the summary; the dbt models
``fct_prediction_outcomes`` / ``mart_model_performance_daily`` live in the warehouse's dbt
project. Sensors and the daily schedule are in ``ml_platform/defs/automation``.
"""

import dagster as dg

from ml_platform.defs.monitoring.assets import (
    drift_report,
    model_performance,
    monitoring_summary,
    online_predictions,
    serving_skew,
)
from ml_platform.defs.partitions import daily_partitions

#: Monitoring over a partition range (the serving and warehouse assets it reads must exist).
monitoring_job = dg.define_asset_job(
    name="monitoring_job",
    selection=dg.AssetSelection.groups("monitoring")
    | dg.AssetSelection.assets("fct_prediction_outcomes", "mart_model_performance_daily"),
    partitions_def=daily_partitions,
    description="Export online predictions, drift + skew per day, labeled performance, summary.",
)

#: Predictions joined with matured labels (dbt) and the performance table, over a range.
labeled_performance_job = dg.define_asset_job(
    name="labeled_performance_job",
    selection=dg.AssetSelection.assets(
        "fct_prediction_outcomes", "mart_model_performance_daily", "model_performance"
    ),
    partitions_def=daily_partitions,
    description="dbt prediction outcomes + performance mart over a range, then model_performance.",
)

defs = dg.Definitions(
    assets=[online_predictions, drift_report, serving_skew, model_performance, monitoring_summary],
    jobs=[monitoring_job, labeled_performance_job],
)
