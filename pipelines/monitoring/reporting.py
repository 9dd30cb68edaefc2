"""The night's drift report: an HTML page with charts, and its metrics in MLflow."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipelines import contracts
from pipelines.io import lake, tracking
from pipelines.monitoring import drift, profiling
from pipelines.monitoring.nightly import load_reference_profile, report_dir
from pipelines.scoring import publishing
from pipelines.settings import Settings


def _chart(reference: np.ndarray, current: np.ndarray, labels: list[str], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = reference / max(reference.sum(), 1)
    cur = current / max(current.sum(), 1)
    positions = np.arange(len(labels))
    figure, axes = plt.subplots(figsize=(6, 2.6))
    axes.bar(positions - 0.2, ref, width=0.4, label="reference")
    axes.bar(positions + 0.2, cur, width=0.4, label="today")
    axes.set_xticks(positions, labels, rotation=45, ha="right", fontsize=7)
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _feature_chart(
    profile: dict[str, Any], frame: pd.DataFrame, item: contracts.FeatureDrift
) -> str:
    reference = profile["features"][item.feature]
    if reference["kind"] == "numeric":
        current = drift.numeric_counts(reference, frame[item.feature].to_numpy(dtype=float))
        edges = reference["edges"]
        labels = [f"{edges[i]:.3g}-{edges[i + 1]:.3g}" for i in range(len(edges) - 1)]
        ref_counts = np.asarray(reference["counts"], dtype=float)
    else:
        today = profiling.categorical_profile(frame[item.feature])["counts"]
        labels = sorted(set(reference["counts"]) | set(today))
        ref_counts = np.array([reference["counts"].get(c, 0) for c in labels], dtype=float)
        current = np.array([today.get(c, 0) for c in labels], dtype=float)
    title = f"{drift.describe(item)}: {item.level}"
    return _chart(ref_counts, np.asarray(current, dtype=float), labels, title)


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _performance_table(report: contracts.DriftReport) -> str:
    """Realized performance per model version, as an HTML table (or why there is none)."""
    if not report.performance:
        return f"<p>Realized performance: {report.performance_level}</p>"
    rows = "".join(
        f"<tr><td>{html.escape(item.model_version)}"
        f"{' (scored tonight)' if item.model_version == report.model_version else ''}</td>"
        f"<td>{html.escape(', '.join(item.nights))}</td><td>{item.rows}</td>"
        f"<td>{_optional(item.metrics.get('roc_auc'))}</td>"
        f"<td>{_optional(item.holdout_metrics.get('roc_auc'))}</td>"
        f"<td>{_optional(item.roc_auc_drop)}</td><td class='{item.level}'>{item.level}</td></tr>"
        for item in report.performance
    )
    return (
        "<h2>Realized performance, by the model version that predicted</h2>"
        "<table><tr><th>version</th><th>nights</th><th>labelled</th><th>ROC AUC</th>"
        f"<th>holdout ROC AUC</th><th>drop</th><th>level</th></tr>{rows}</table>"
    )


def write_report(settings: Settings, report: contracts.DriftReport) -> Path:
    """Write the night's report as JSON and as HTML with one chart per feature."""
    day = date.fromisoformat(report.day)
    target = report_dir(settings, day)
    lake.write_json_atomic(asdict(report), target / "report.json")
    profile = load_reference_profile(settings, report.model_version)
    frame = pq.read_table(
        lake.partition_file(settings.validated_root, settings.project.feature_dataset, day),
        columns=list(profile["features"]),
    ).to_pandas()
    scores = pq.read_table(
        publishing.partition(settings, publishing.PREDICTIONS, day),
        columns=[settings.project.scoring.score_column],
    )[settings.project.scoring.score_column].to_numpy()
    charts = [_feature_chart(profile, frame, item) for item in report.features]
    edges = np.asarray(profile["predictions"]["edges"])
    today, _ = np.histogram(scores, bins=edges)
    charts.append(
        _chart(
            np.asarray(profile["predictions"]["counts"], float),
            today.astype(float),
            [f"{edge:.2f}" for edge in edges[:-1]],
            f"predictions: PSI {report.prediction_psi:.3f} ({report.prediction_level})",
        )
    )
    rows = "".join(
        f"<tr><td>{html.escape(f.feature)}</td><td>{f.kind}</td><td>{f.score:.4f}</td>"
        f"<td>{f.distance:.4f}</td><td>{_optional(f.wasserstein)}</td>"
        f"<td>{f.unseen_share:.2%}</td><td class='{f.level}'>{f.level}</td></tr>"
        for f in report.features
    )
    verdict = "; ".join(report.reasons) if report.alarm else "no alarm"
    images = "".join(f"<img src='data:image/png;base64,{chart}'>" for chart in charts)
    page = (
        "<!doctype html><meta charset='utf-8'>"
        f"<title>Drift {report.day}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px}"
        ".alert{color:#b00;font-weight:bold}.warning{color:#c70}</style>"
        f"<h1>Drift report {report.day}</h1>"
        f"<p>Model version {report.model_version}, {report.rows} rows. "
        f"<b>{html.escape(verdict)}</b></p>"
        "<table><tr><th>feature</th><th>kind</th><th>PSI / JS</th><th>KS / JS</th>"
        "<th>Wasserstein (normed)</th>"
        f"<th>unseen</th><th>level</th></tr>{rows}</table>{_performance_table(report)}{images}"
    )
    lake.write_bytes_atomic(page.encode(), target / "report.html")
    return target / "report.html"


def _drift_run(client: Any, experiment: str, version: str) -> str:
    """The run holding a model version's drift time series (created on its first night)."""
    runs = client.search_runs([experiment], f"tags.model_version = '{version}'", max_results=1)
    if runs:
        return str(runs[0].info.run_id)
    created = client.create_run(
        experiment, run_name=f"drift-v{version}", tags={"model_version": version}
    )
    return str(created.info.run_id)


def _log_step(client: Any, run_id: str, day: date, metrics: dict[str, float]) -> None:
    """Log metrics as the night's step of a run's time series."""
    import mlflow

    moment = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    client.log_batch(
        run_id,
        metrics=[
            mlflow.entities.Metric(key, float(value), moment, day.toordinal())
            for key, value in metrics.items()
        ],
    )


def _realized_metrics(item: contracts.RealizedPerformance) -> dict[str, float]:
    """A version's realized performance as metrics of its drift run."""
    metrics = {f"realized.{name}": value for name, value in item.metrics.items()}
    metrics["realized.rows"] = float(item.rows)
    if item.roc_auc_drop is not None:
        metrics["realized.roc_auc_drop"] = item.roc_auc_drop
    return metrics


def log_to_mlflow(settings: Settings, report: contracts.DriftReport) -> str:
    """Log the night's metrics as one step of the scoring version's drift time series; each
    version's realized performance goes to that version's own series."""
    client = tracking.mlflow_client(settings)
    experiment = tracking.experiment_id(
        settings, contracts.drift_experiment(settings.project.model.name)
    )
    run_id = _drift_run(client, experiment, report.model_version)
    day = date.fromisoformat(report.day)
    metrics = {f"drift.{f.feature}": f.score for f in report.features}
    metrics |= {
        f"drift.{f.feature}.wasserstein": f.wasserstein
        for f in report.features
        if f.wasserstein is not None
    }
    metrics["drift.prediction_psi"] = report.prediction_psi
    metrics["drift.features_alerting"] = float(len(report.drifted))
    metrics["drift.alarm"] = float(report.alarm)
    _log_step(client, run_id, day, metrics)
    for item in report.performance:
        version_run = _drift_run(client, experiment, item.model_version)
        _log_step(client, version_run, day, _realized_metrics(item))
    return run_id
