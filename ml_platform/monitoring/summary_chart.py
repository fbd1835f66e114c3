"""The monitoring summary chart: one PNG the Dagster UI shows next to the summary asset.

Four panels: prediction volume per day, the score distribution, the share of drifted
features over time (with the alert threshold) and the use case's primary metric on matured
labels over time per model version. matplotlib is imported here only, with the
non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def plot_summary(
    path: Path | str,
    *,
    volume: pd.DataFrame,
    scores: np.ndarray,
    drift: pd.DataFrame,
    performance: pd.DataFrame,
    drift_threshold: float,
    title: str = "ml_platform monitoring",
    metric: str = "average_precision",
    metric_label: str = "average precision",
    score_label: str = "fraud probability",
    probability: bool = True,
) -> Path:
    """Write the 2x2 summary chart to ``path``.

    ``volume``: columns day, source, n; ``drift``: day, drift_share;
    ``performance``: tx_date, model_version, source and the ``metric`` column. Any of them
    may be empty (the panel then says so). ``probability``: scores (and the metric) lie in
    [0, 1]; a regression's predicted values and errors are plotted on their own scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), dpi=80)
    (ax_vol, ax_score), (ax_drift, ax_ap) = axes

    if len(volume):
        for source, g in volume.groupby("source"):
            ax_vol.plot(pd.to_datetime(g["day"]), g["n"], marker=".", label=str(source))
        ax_vol.legend(fontsize=8)
    _finish(ax_vol, "predictions per day", volume.empty)

    scores = np.asarray(scores, dtype=float)
    if len(scores):
        bounds = (0.0, 1.0) if probability else None
        ax_score.hist(scores, bins=50, range=bounds, color="tab:purple")
        ax_score.set_yscale("log")
        ax_score.set_xlabel(score_label)
    _finish(ax_score, f"score distribution (n={len(scores)})", len(scores) == 0)

    if len(drift):
        ax_drift.plot(pd.to_datetime(drift["day"]), drift["drift_share"], marker=".")
        ax_drift.axhline(drift_threshold, color="tab:red", ls="--", label="threshold")
        ax_drift.set_ylim(0, 1)
        ax_drift.legend(fontsize=8)
    _finish(ax_drift, "share of drifted features", drift.empty)

    usable = len(performance) and metric in performance.columns
    perf = performance.dropna(subset=[metric]) if usable else performance.iloc[0:0]
    if len(perf):
        for (version, source), g in perf.groupby(["model_version", "source"]):
            ax_ap.plot(
                pd.to_datetime(g["tx_date"]),
                g[metric],
                marker=".",
                label=f"v{version} {source}",
            )
        if probability:
            ax_ap.set_ylim(0, 1)
        ax_ap.legend(fontsize=8)
    _finish(ax_ap, f"{metric_label} on matured labels", perf.empty)

    fig.suptitle(title)
    for ax in (ax_vol, ax_drift, ax_ap):
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _finish(ax, title: str, empty: bool) -> None:
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if empty:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
