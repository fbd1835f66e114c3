"""System metrics: API latency and throughput, BentoML's Prometheus metrics, run durations.

Three sources, all read-only: the prediction log (one row per answered request, with the
request's latency), the text a running BentoML server returns on ``/metrics`` (Prometheus
exposition format, parsed here without a client library), and the Dagster instance's run
records (passed in; Dagster is not imported by this module).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

#: BentoML 1.4's request histogram (one series per endpoint and HTTP response code).
REQUEST_DURATION = "bentoml_service_request_duration_seconds"
ENDPOINT_LABEL = "endpoint"
STATUS_LABEL = "http_response_code"


def latency_stats(log: pd.DataFrame) -> dict[str, Any]:
    """Latency percentiles (ms) and throughput of the answered (champion) requests.

    Throughput is requests per second over the span between the first and last request,
    and the busiest minute's rate (traffic is bursty, so both are shown).
    """
    if log.empty:
        return {"n_requests": 0}
    for col in ("latency_ms", "logged_at"):
        if col not in log.columns:
            raise ValueError(f"log.{col}: column required for latency statistics")
    rows = log[log["role"] == "champion"] if "role" in log.columns else log
    if rows.empty:
        return {"n_requests": 0}
    lat = rows["latency_ms"].to_numpy(dtype=np.float64)
    when = pd.to_datetime(rows["logged_at"])
    span = (when.max() - when.min()).total_seconds()
    per_minute = when.dt.floor("min").value_counts()
    out: dict[str, Any] = {
        "n_requests": len(rows),
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p95_ms": float(np.percentile(lat, 95)),
        "latency_p99_ms": float(np.percentile(lat, 99)),
        "latency_max_ms": float(lat.max()),
        "throughput_rps": float(len(rows) / span) if span > 0 else None,
        "peak_minute_rps": float(per_minute.max() / 60.0),
        "first_request": when.min().isoformat(),
        "last_request": when.max().isoformat(),
    }
    if "model_version" in rows.columns:
        out["requests_by_model_version"] = {
            str(k): int(v) for k, v in rows["model_version"].value_counts().items()
        }
    if "role" in log.columns:
        out["n_shadow"] = int((log["role"] == "shadow").sum())
    return out


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text exposition -> ``{sample name: [(labels, value), ...]}``.

    Sample names keep their suffix (``..._bucket``, ``..._count``, ``..._total``), as
    scraped; parsing is ``prometheus_client``'s, so any valid exposition is read.
    """
    from prometheus_client.parser import text_string_to_metric_families

    metrics: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                metrics[sample.name].append((dict(sample.labels), float(sample.value)))
    except ValueError as exc:
        raise ValueError(f"prometheus: cannot parse the /metrics text ({exc})") from None
    return dict(metrics)


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Quantile from cumulative ``(upper bound, count)`` buckets, as PromQL does."""
    if not buckets:
        return None
    buckets = sorted(buckets)
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return buckets[-1][0]


def bentoml_request_metrics(text: str) -> dict[str, dict[str, Any]]:
    """Per-endpoint request count, counts per HTTP code and latency from BentoML's ``/metrics``.

    Read from the ``bentoml_service_request_duration_seconds`` histogram: ``count`` and
    ``by_status`` from its ``_count`` series, ``mean_ms`` from ``_sum``, and p50/p95/p99
    interpolated in its buckets summed over response codes (PromQL's
    ``histogram_quantile``), so they cover every answered request of the endpoint.
    """
    metrics = parse_prometheus(text)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    by_status: dict[str, dict[str, int]] = defaultdict(dict)
    seconds: dict[str, float] = defaultdict(float)
    for labels, value in metrics.get(f"{REQUEST_DURATION}_bucket", []):
        buckets[labels.get(ENDPOINT_LABEL, "")][float(labels["le"])] += value
    for labels, value in metrics.get(f"{REQUEST_DURATION}_count", []):
        endpoint, code = labels.get(ENDPOINT_LABEL, ""), labels.get(STATUS_LABEL, "")
        by_status[endpoint][code] = by_status[endpoint].get(code, 0) + int(value)
    for labels, value in metrics.get(f"{REQUEST_DURATION}_sum", []):
        seconds[labels.get(ENDPOINT_LABEL, "")] += value
    out: dict[str, dict[str, Any]] = {}
    for endpoint in sorted(by_status):
        pairs = sorted(buckets[endpoint].items())
        count = sum(by_status[endpoint].values())
        out[endpoint] = {
            "count": count,
            "by_status": dict(sorted(by_status[endpoint].items())),
            "mean_ms": _ms(seconds[endpoint] / count) if count else None,
            "p50_ms": _ms(histogram_quantile(pairs, 0.5)),
            "p95_ms": _ms(histogram_quantile(pairs, 0.95)),
            "p99_ms": _ms(histogram_quantile(pairs, 0.99)),
        }
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def run_durations(records: list[Any]) -> pd.DataFrame:
    """Duration per finished run, from Dagster ``RunRecord`` objects (any iterable of them)."""
    rows = []
    for rec in records:
        start, end = getattr(rec, "start_time", None), getattr(rec, "end_time", None)
        run = rec.dagster_run
        rows.append(
            {
                "run_id": run.run_id,
                "job_name": run.job_name,
                "status": run.status.value if hasattr(run.status, "value") else str(run.status),
                "start_time": pd.Timestamp(start, unit="s") if start else pd.NaT,
                "seconds": (end - start) if start and end else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["run_id", "job_name", "status", "start_time", "seconds"])


def run_duration_stats(durations: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Count, median and max duration per job."""
    if durations.empty:
        return {}
    done = durations.dropna(subset=["seconds"])
    stats = done.groupby("job_name")["seconds"].agg(["count", "median", "max"])
    return {
        str(job): {
            "runs": int(r["count"]),
            "median_s": float(r["median"]),
            "max_s": float(r["max"]),
        }
        for job, r in stats.iterrows()
    }
