"""The nightly drift check: today's data against the scoring model's reference profile.

Reads only today's validated features and predictions (and today's labels, for the
performance of the earlier predictions they judge, per model version that made them) plus
the profile stored with the model; writes a JSON and an HTML report, and logs every metric
to MLflow as a time series (one run per model version, one step per night).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pipelines import contracts
from pipelines.errors import DataQualityError, NoFeaturesError
from pipelines.io import lake, tracking
from pipelines.monitoring import drift, profiling
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
        run_id=run_id, artifact_path=profiling.PROFILE_ARTIFACT
    )
    return json.loads(Path(path).read_text())


# The column of labelled predictions naming the night each prediction was made for.
NIGHT_COLUMN = "prediction_night"


def _labels(settings: Settings, day: date) -> pd.DataFrame:
    """The labels that landed on `day`, each with the night it is about (the label rule);
    a label partition may hold the labels of several nights."""
    names = settings.project
    columns = [names.entity.column, names.source.timestamp, names.label.column]
    path = lake.partition_file(settings.raw_root, names.label.dataset, day)
    if not path.exists():
        return pd.DataFrame(columns=[*columns, NIGHT_COLUMN])
    labels = pd.read_parquet(path, columns=columns)
    try:
        nights = {
            stamp: contracts.labelled_night(stamp, day)
            for stamp in labels[names.source.timestamp].drop_duplicates()
        }
    except DataQualityError as error:
        raise DataQualityError(f"{names.label.dataset} date={day.isoformat()}: {error}") from None
    return labels.assign(**{NIGHT_COLUMN: labels[names.source.timestamp].map(nights)})


def labelled_predictions(settings: Settings, day: date) -> pd.DataFrame:
    """Earlier predictions whose labels landed on `day`: each with its night, the model
    version that made it, its score and its label."""
    names = settings.project
    score = names.scoring.score_column
    parts = []
    for night, labels in _labels(settings, day).groupby(NIGHT_COLUMN, sort=True):
        path = publishing.partition(settings, publishing.PREDICTIONS, night)
        if path.exists():
            predictions = pd.read_parquet(
                path, columns=[names.entity.column, score, "model_version"]
            )
            parts.append(labels.merge(predictions, on=names.entity.column))
    if not parts:
        return pd.DataFrame(columns=[NIGHT_COLUMN, names.label.column, score, "model_version"])
    return pd.concat(parts, ignore_index=True)


def holdout_metrics(settings: Settings, version: str) -> dict[str, float]:
    """A model version's metrics on its own holdout, as its training run logged them."""
    client = tracking.mlflow_client(settings)
    run_id = client.get_model_version(settings.project.model.name, version).run_id
    logged = client.get_run(run_id).data.metrics
    prefix = "holdout_"
    return {
        name.removeprefix(prefix): value
        for name, value in logged.items()
        if name.startswith(prefix)
    }


def _version_performance(
    settings: Settings, version: str, rows: pd.DataFrame
) -> contracts.RealizedPerformance:
    """One version's labelled predictions measured, beside its own holdout."""
    from pipelines.training.model_metrics import classification_metrics

    names = settings.project
    labels = rows[names.label.column].to_numpy(dtype=int)
    holdout = holdout_metrics(settings, version)
    measured: dict[str, float] = {}
    drop, level = None, "too_few_rows"
    if len(rows) >= settings.drift.min_labelled_rows and len(set(labels)) == 2:
        scores = rows[names.scoring.score_column].to_numpy(dtype=float)
        measured = classification_metrics(labels, scores)
        drop, level = drift.performance_drop(measured["roc_auc"], holdout["roc_auc"], settings)
    return contracts.RealizedPerformance(
        model_version=version,
        nights=sorted(night.isoformat() for night in rows[NIGHT_COLUMN].unique()),
        rows=len(rows),
        metrics=measured,
        holdout_metrics=holdout,
        roc_auc_drop=drop,
        level=level,
    )


def realized_performance(settings: Settings, day: date) -> list[contracts.RealizedPerformance]:
    """Per model version, how its earlier predictions did by the labels that landed on
    `day`, against the metrics of that version's own holdout."""
    rows = labelled_predictions(settings, day)
    versions = sorted({str(version) for version in rows["model_version"]}, key=int)
    return [
        _version_performance(settings, version, rows[rows["model_version"] == version])
        for version in versions
    ]


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
    scoring = drift.scoring_performance(performance, version)
    drifted = [f for f in features if f.level == "alert"]
    reasons = drift.decide(drifted, prediction_level, scoring, settings)
    return contracts.DriftReport(
        day=day.isoformat(),
        model_version=version,
        rows=len(frame),
        features=features,
        prediction_psi=prediction_psi,
        prediction_level=prediction_level,
        performance=performance,
        performance_level="no_labels" if scoring is None else scoring.level,
        alarm=bool(reasons),
        reasons=reasons,
    )
