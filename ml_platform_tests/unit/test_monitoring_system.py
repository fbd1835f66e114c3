"""System metrics: latency from the prediction log, BentoML's Prometheus text, run stats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_platform.monitoring.system import (
    bentoml_request_metrics,
    histogram_quantile,
    latency_stats,
    parse_prometheus,
)

METRICS = """\
# HELP bentoml_service_request_duration_seconds API HTTP request duration in seconds
# TYPE bentoml_service_request_duration_seconds histogram
bentoml_request_duration_seconds_bucket{endpoint="/predict",code="200",le="0.001"} 10.0
bentoml_request_duration_seconds_bucket{endpoint="/predict",code="200",le="0.002"} 60.0
bentoml_request_duration_seconds_bucket{endpoint="/predict",code="200",le="0.005"} 90.0
bentoml_request_duration_seconds_bucket{endpoint="/predict",code="200",le="+Inf"} 90.0
bentoml_request_duration_seconds_bucket{endpoint="/predict",code="400",le="0.001"} 10.0
bentoml_request_duration_seconds_bucket{endpoint="/predict",code="400",le="0.002"} 10.0
bentoml_request_duration_seconds_bucket{endpoint="/predict",code="400",le="0.005"} 10.0
bentoml_request_duration_seconds_bucket{endpoint="/predict",code="400",le="+Inf"} 10.0
bentoml_request_duration_seconds_count{endpoint="/predict",code="200"} 90.0
bentoml_request_total{endpoint="/predict",code="200",service_name="FraudDetector"} 90.0
"""


def test_prometheus_text_to_endpoint_quantiles():
    parsed = parse_prometheus(METRICS)
    assert len(parsed["bentoml_request_duration_seconds_bucket"]) == 8
    labels, value = parsed["bentoml_request_total"][0]
    assert labels["service_name"] == "FraudDetector" and value == 90.0
    stats = bentoml_request_metrics(METRICS)["/predict"]
    assert stats["count"] == 100  # both response codes
    # 100 requests: 20 below 1 ms, 70 in (1, 2] ms, 100 by 5 ms -> median at 1 + 30/50 ms
    assert stats["p50_ms"] == pytest.approx(1.6)
    assert stats["p99_ms"] == pytest.approx(2 + 3 * 29 / 30)


def test_histogram_quantile_edges():
    assert histogram_quantile([], 0.5) is None
    assert histogram_quantile([(1.0, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert histogram_quantile([(1.0, 5.0), (float("inf"), 10.0)], 0.9) == 1.0  # in +Inf bucket


def test_bad_prometheus_line_is_named():
    with pytest.raises(ValueError, match="prometheus"):
        parse_prometheus("this is not a metric line\n")


def test_latency_stats_from_the_log():
    t0 = pd.Timestamp("2025-06-01 12:00:00")
    log = pd.DataFrame(
        {
            "logged_at": [t0 + pd.Timedelta(seconds=i) for i in range(101)] + [t0],
            "latency_ms": list(np.arange(101, dtype=float)) + [500.0],
            "role": ["champion"] * 101 + ["shadow"],
            "model_version": ["3"] * 101 + ["4"],
        }
    )
    s = latency_stats(log)
    assert s["n_requests"] == 101 and s["n_shadow"] == 1
    assert s["latency_p50_ms"] == pytest.approx(50.0)
    assert s["latency_p99_ms"] == pytest.approx(99.0)
    assert s["throughput_rps"] == pytest.approx(101 / 100)
    assert s["requests_by_model_version"] == {"3": 101}
    assert latency_stats(log.iloc[:0]) == {"n_requests": 0}
