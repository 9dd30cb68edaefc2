"""The nightly drift check: today's data against the scoring model's reference profile.

Reads only today's validated features and predictions (and today's labels, for
the performance of earlier predictions) plus the profile stored with the model;
writes a JSON and an HTML report, and logs every metric to MLflow as a time
series (one run per model version, one step per night).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pipelines import contracts
from pipelines.errors import NoFeaturesError
from pipelines.io import lake, tracking
from pipelines.monitoring import drift
from pipelines.scoring import publishing
from pipelines.settings import Settings


def report_dir(settings: Settings, day: date) -> Path:
    """Where a night's drift report is written."""
    return settings.state_root / "reports" / "drift" / f"date={day.isoformat()}"


def load_reference_profile(settings: Settings, version: str) -> dict[str, Any]:
    """The reference profile logged with a model version at training time."""
    import mlflow

    client = tracking.mlflow_client(settings)
    run_id = client.get_model_version(settings.project.model.name, version).run_id
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="reference_profile.json"
    )
    return json.loads(Path(path).read_text())


def realized_performance(settings: Settings, day: date) -> dict[str, float] | None:
    """ROC AUC and calibration of earlier predictions whose labels landed today."""
    from pipelines.training.model_metrics import classification_metrics

    names = settings.project
    labels_path = lake.partition_file(settings.raw_root, names.label.dataset, day)
    if not labels_path.exists():
        return None
    labels = pd.read_parquet(
        labels_path, columns=[names.entity.column, names.source.timestamp, names.label.column]
    )
    if labels.empty:
        return None
    predicted_on = contracts.labelled_night(labels[names.source.timestamp].iloc[0])
    predictions_path = publishing.partition(settings, publishing.PREDICTIONS, predicted_on)
    if not predictions_path.exists():
        return None
    predictions = pd.read_parquet(
        predictions_path, columns=[names.entity.column, settings.project.scoring.score_column]
    )
    joined = labels.merge(predictions, on=names.entity.column)
    if len(joined) < settings.drift.min_labelled_rows or joined[names.label.column].nunique() < 2:
        return None
    metrics = classification_metrics(
        joined[names.label.column].to_numpy(),
        joined[settings.project.scoring.score_column].to_numpy(),
    )
    return {**metrics, "rows": float(len(joined)), "predicted_on_ordinal": predicted_on.toordinal()}


def check(settings: Settings, day: date) -> contracts.DriftReport:
    """Compare a scored night with the reference profile of the model that scored it."""
    predictions_path = publishing.partition(settings, publishing.PREDICTIONS, day)
    features_path = lake.partition_file(
        settings.validated_root, settings.project.feature_dataset, day
    )
    for path in (predictions_path, features_path):
        if not path.exists():
            raise NoFeaturesError(f"nothing to check for {day.isoformat()}: {path} is missing")
    predictions = pq.read_table(
        predictions_path, columns=["model_version", settings.project.scoring.score_column]
    ).to_pandas()
    version = str(predictions["model_version"].iloc[0])
    profile = load_reference_profile(settings, version)
    frame = pq.read_table(features_path, columns=list(profile["features"])).to_pandas()
    levels = settings.drift
    features = drift.feature_drift(profile, frame, settings)
    scores = predictions[settings.project.scoring.score_column].to_numpy()
    prediction_psi = drift.prediction_drift(profile, scores)
    prediction_level = (
        "too_few_rows"
        if len(scores) < levels.min_rows
        else drift.level_of(
            prediction_psi, levels.prediction_psi.warning, levels.prediction_psi.alert
        )
    )
    performance = realized_performance(settings, day)
    performance_level = "no_labels"
    if performance is not None:
        drop = profile["holdout_metrics"]["roc_auc"] - performance["roc_auc"]
        performance["roc_auc_drop"] = drop
        performance_level = drift.level_of(
            drop, levels.roc_auc_drop.warning, levels.roc_auc_drop.alert
        )
    drifted = [f for f in features if f.level == "alert"]
    reasons = drift.decide(drifted, prediction_level, performance_level, settings)
    return contracts.DriftReport(
        day=day.isoformat(),
        model_version=version,
        rows=len(frame),
        features=features,
        prediction_psi=prediction_psi,
        prediction_level=prediction_level,
        performance=performance,
        performance_level=performance_level,
        alarm=bool(reasons),
        reasons=reasons,
    )
