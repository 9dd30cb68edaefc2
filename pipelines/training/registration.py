"""Training: point-in-time set → fitted model → MLflow run and registered version."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from pipelines import contracts
from pipelines.contracts import TrainedModel
from pipelines.io import tracking
from pipelines.monitoring import profiling
from pipelines.settings import Settings
from pipelines.training import encoding, model_card
from pipelines.training.fitting import fit, merge_hyperparameters
from pipelines.training.model_metrics import CALIBRATION_BINS, classification_metrics
from pipelines.training.splits import FeatureSpec, TimeSplit, feature_spec, split_by_time

# MLflow saves scikit-learn models with skops, which loads only types declared safe.
SKOPS_TRUSTED_TYPES = ["xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"]


def fingerprint(frame: pd.DataFrame) -> str:
    """Content hash of a training set: same rows and values give the same fingerprint."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def _figures(model: Pipeline, holdout: pd.DataFrame, spec: FeatureSpec, label: str) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    labels = holdout[label].to_numpy()
    scores = model.predict_proba(holdout[spec.columns])[:, 1]
    figures = {}
    for name, display in (
        ("roc_curve.png", RocCurveDisplay.from_predictions),
        ("pr_curve.png", PrecisionRecallDisplay.from_predictions),
    ):
        figures[name] = display(labels, scores).figure_
    figures["calibration.png"] = CalibrationDisplay.from_predictions(
        labels, scores, n_bins=CALIBRATION_BINS
    ).figure_
    importance = pd.Series(
        model.named_steps["classify"].feature_importances_, index=spec.columns
    ).sort_values()
    figure, axes = plt.subplots(figsize=(6, 4))
    importance.plot.barh(ax=axes, title="feature importance (gain share)")
    figure.tight_layout()
    figures["feature_importance.png"] = figure
    return figures


def _lineage(settings: Settings, training_frame: pd.DataFrame, split: TimeSplit) -> dict[str, str]:
    """Tags tying a run and its version to their training set and code."""
    names = settings.project
    stamps = training_frame[names.source.timestamp]
    return {
        "feature_service": names.model.feature_service,
        "training_set.fingerprint": fingerprint(training_frame),
        "training_set.rows": str(len(training_frame)),
        "training_set.label_share": str(float(training_frame[names.label.column].mean())),
        "training_set.start": stamps.min().isoformat(),
        "training_set.end": stamps.max().isoformat(),
        "holdout.start": split.holdout[names.source.timestamp].min().isoformat(),
        "holdout.rows": str(len(split.holdout)),
        "code_version": tracking.code_version(settings.project_root) or "unknown",
    }


def _log_inputs(
    settings: Settings,
    training_frame: pd.DataFrame,
    hyperparameters: dict[str, Any],
    spec: FeatureSpec,
    lineage: dict[str, str],
) -> None:
    """The active run's parameters and its training set as an MLflow dataset input."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    names = settings.project
    window_days = training_frame[names.source.timestamp].dt.date.nunique()
    mlflow.log_params({**hyperparameters, "window_days": window_days, "features": spec.columns})
    dataset = from_pandas(
        training_frame,
        name=f"{names.model.feature_service}-training-set",
        targets=names.label.column,
        digest=lineage["training_set.fingerprint"],
    )
    mlflow.log_input(dataset, context="training")


def _log_model(settings: Settings, model: Pipeline, split: TimeSplit, spec: FeatureSpec) -> Any:
    """Figures, then the model itself, registered as a new version; its MLflow ModelInfo."""
    import matplotlib.pyplot as plt
    import mlflow
    from mlflow.models import infer_signature

    for name, figure in _figures(model, split.holdout, spec, settings.project.label.column).items():
        mlflow.log_figure(figure, f"{model_card.PLOTS}/{name}")
        plt.close(figure)
    example = split.holdout[spec.columns].head(5)
    return mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(example, model.predict_proba(example)),
        input_example=example,
        pyfunc_predict_fn="predict_proba",
        metadata=encoding.declare(
            model.named_steps["encode"], spec.columns, spec.categorical
        ).to_metadata(),
        registered_model_name=settings.project.model.name,
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )


def _scored(
    model: Pipeline, rows: pd.DataFrame, spec: FeatureSpec, label: str
) -> tuple[np.ndarray, dict[str, float]]:
    """Scores of some rows and their classification metrics."""
    scores = model.predict_proba(rows[spec.columns])[:, 1]
    return scores, classification_metrics(rows[label].to_numpy(), scores)


def train_and_register(
    settings: Settings,
    training_frame: pd.DataFrame,
    hyperparameter_overrides: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> TrainedModel:
    """Train on a point-in-time set; log everything to MLflow; register a new version, with
    its model card (decision pending until the gate's outcome is acted on)."""
    import mlflow

    names, training = settings.project, settings.training
    hyperparameters = merge_hyperparameters(names.model.hyperparameters, hyperparameter_overrides)
    spec = feature_spec(
        training_frame, [names.entity.column, names.source.timestamp, names.label.column]
    )
    split = split_by_time(
        training_frame, names.source.timestamp, training.validation_share, training.holdout_share
    )
    model = fit(split, spec, names.label.column, hyperparameters, training.random_seed)
    holdout_scores, holdout_metrics = _scored(model, split.holdout, spec, names.label.column)
    _, validation_metrics = _scored(model, split.validation, spec, names.label.column)
    profile = profiling.reference_profile(
        split.train[spec.columns],
        spec.categorical,
        holdout_scores,
        holdout_metrics,
        training.profile_bins,
        settings.drift,
    )
    lineage = _lineage(settings, training_frame, split)
    tracking.mlflow_client(settings)
    experiment = tracking.experiment_id(settings, contracts.training_experiment(names.model.name))
    last_day = training_frame[names.source.timestamp].max().date()
    with mlflow.start_run(experiment_id=experiment, run_name=f"train-{last_day}") as run:
        mlflow.set_tags({**lineage, **(tags or {})})
        if lineage["code_version"] != "unknown":
            mlflow.set_tag("mlflow.source.git.commit", lineage["code_version"])
        _log_inputs(settings, training_frame, hyperparameters, spec, lineage)
        mlflow.log_metrics({f"holdout_{k}": v for k, v in holdout_metrics.items()})
        mlflow.log_metrics({f"validation_{k}": v for k, v in validation_metrics.items()})
        mlflow.log_metric("best_iteration", model.named_steps["classify"].best_iteration)
        mlflow.log_dict(profile, profiling.PROFILE_ARTIFACT)
        info = _log_model(settings, model, split, spec)
    version = str(info.registered_model_version)
    client = tracking.mlflow_client(settings)
    for key, value in lineage.items():
        client.set_model_version_tag(names.model.name, version, key, value)
    model_card.write(settings, version, model_card.PENDING)
    return TrainedModel(
        run_id=run.info.run_id,
        model_name=names.model.name,
        version=version,
        model_uri=f"models:/{names.model.name}/{version}",
        metrics={f"holdout_{k}": v for k, v in holdout_metrics.items()},
    )
