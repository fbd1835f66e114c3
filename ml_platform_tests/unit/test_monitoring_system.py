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

LABELS = (
    'runner_name="fraud_detector",service_name="fraud_detector",service_version="not available"'
)
BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0",
          "30.0", "60.0", "120.0", "180.0", "+Inf")  # fmt: skip


def _series(endpoint: str, code: str, cumulative: list[int], total_s: float) -> str:
    """One endpoint/code series exactly as BentoML 1.4 writes it on ``/metrics``."""
    head = f'endpoint="{endpoint}",http_response_code="{code}"'
    name = "bentoml_service_request_duration_seconds"
    lines = [f"{name}_sum{{{head},{LABELS}}} {total_s}"]
    counts = cumulative + [cumulative[-1]] * (len(BOUNDS) - len(cumulative))
    lines += [
        f'{name}_bucket{{{head},le="{le}",{LABELS}}} {float(n)}'
        for le, n in zip(BOUNDS, counts, strict=True)
    ]
    lines.append(f"{name}_count{{{head},{LABELS}}} {float(counts[-1])}")
    return "\n".join(lines)


# The families, names and labels of a real `bentoml serve` /metrics page (BentoML 1.4).
METRICS = f"""\
# HELP bentoml_service_request_total Total number of runner RPC
# TYPE bentoml_service_request_total counter
bentoml_service_request_total{{endpoint="/predict",http_response_code="200",{LABELS}}} 90.0
bentoml_service_request_total{{endpoint="/predict",http_response_code="500",{LABELS}}} 0.0
bentoml_service_request_total{{endpoint="/predict",http_response_code="400",{LABELS}}} 10.0
# HELP bentoml_service_request_duration_seconds runner RPC duration in seconds
# TYPE bentoml_service_request_duration_seconds histogram
{_series("/readyz", "200", [3], 0.003)}
{_series("/predict", "200", [20, 70, 90], 0.9)}
{_series("/predict", "400", [10], 0.01)}
# HELP bentoml_service_request_in_progress Total number of runner RPC in progress now
# TYPE bentoml_service_request_in_progress gauge
bentoml_service_request_in_progress{{endpoint="/predict",{LABELS}}} 0.0
# HELP bentoml_service_last_request_timestamp_seconds Timestamp of the last received request
# TYPE bentoml_service_last_request_timestamp_seconds gauge
bentoml_service_last_request_timestamp_seconds{{pid="11815",{LABELS}}} 1.796140404941277e+09
"""


def test_bentoml_metrics_to_endpoint_counts_and_quantiles():
    parsed = parse_prometheus(METRICS)
    assert len(parsed["bentoml_service_request_duration_seconds_bucket"]) == 3 * len(BOUNDS)
    labels, value = parsed["bentoml_service_request_total"][2]
    assert labels["http_response_code"] == "400" and value == 10.0
    stats = bentoml_request_metrics(METRICS)
    assert set(stats) == {"/predict", "/readyz"}
    predict = stats["/predict"]
    assert predict["count"] == 100 and predict["by_status"] == {"200": 90, "400": 10}
    assert predict["mean_ms"] == pytest.approx(9.1)  # (0.9 + 0.01) s over 100 requests
    # both codes: 30 by 5 ms, 80 by 10 ms, 100 by 25 ms -> median at 5 + 5 * 20/50 ms
    assert predict["p50_ms"] == pytest.approx(7.0)
    assert predict["p95_ms"] == pytest.approx(10 + 15 * 15 / 20)
    assert predict["p99_ms"] == pytest.approx(10 + 15 * 19 / 20)
    assert stats["/readyz"]["count"] == 3 and stats["/readyz"]["p50_ms"] == pytest.approx(2.5)


def test_histogram_quantile_edges():
    assert histogram_quantile([], 0.5) is None
    assert histogram_quantile([(1.0, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert histogram_quantile([(1.0, 5.0), (float("inf"), 10.0)], 0.9) == 1.0  # in +Inf bucket


def test_bad_prometheus_line_is_named():
    with pytest.raises(ValueError, match="prometheus: cannot parse"):
        parse_prometheus("this is not a metric line\n")
    assert bentoml_request_metrics("") == {}


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
