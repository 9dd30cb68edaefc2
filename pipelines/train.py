"""Training: point-in-time set → XGBoost in a scikit-learn pipeline → MLflow run and version.

The split is by time (train, then validation, then holdout, by prediction day);
early stopping watches the validation days. Categorical features are ordinal-
encoded and declared categorical to XGBoost, so it splits on categories rather
than on arbitrary codes; a category unseen in training becomes missing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from xgboost import XGBClassifier

from pipelines import contracts, drift, tracking
from pipelines.errors import ConfigurationError
from pipelines.settings import Settings

# The hyperparameters a run may override, with their bounds: the contract's (defaults:
# `TrainingSettings.hyperparameters`).
HYPERPARAMETERS = contracts.HYPERPARAMETER_BOUNDS
CALIBRATION_BINS = 10
# MLflow saves scikit-learn models with skops, which loads only types declared safe.
SKOPS_TRUSTED_TYPES = ["xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"]


@dataclass(frozen=True)
class TimeSplit:
    """Train, validation and holdout rows, each a contiguous range of prediction days."""

    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns of a training set are features, and which of those are categorical."""

    categorical: list[str]
    numeric: list[str]

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]


@dataclass(frozen=True)
class TrainedModel:
    """A registered candidate (JSON-friendly, for XCom)."""

    run_id: str
    model_name: str
    version: str
    model_uri: str
    metrics: dict[str, float]


def merge_hyperparameters(
    defaults: dict[str, Any], overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """Settings' hyperparameters with per-run overrides, checked against the contract's
    bounds (unknown names, text, NaN, infinities: a `ConfigurationError` naming the field)."""
    return {
        **contracts.check_hyperparameters(defaults, "training.hyperparameters"),
        **contracts.check_hyperparameters(overrides or {}),
    }


def feature_spec(frame: pd.DataFrame, excluded: list[str]) -> FeatureSpec:
    """Features are every column but the keys and the label; text columns are categorical."""
    features = [column for column in frame.columns if column not in excluded]
    categorical = [
        c
        for c in features
        if pd.api.types.is_object_dtype(frame[c])
        or isinstance(frame[c].dtype, pd.CategoricalDtype | pd.StringDtype)
    ]
    return FeatureSpec(categorical, [c for c in features if c not in categorical])


def split_by_time(
    frame: pd.DataFrame, timestamp: str, validation_share: float, holdout_share: float
) -> TimeSplit:
    """Split by prediction day: the oldest days train, then validation, the latest are holdout."""
    days = np.sort(frame[timestamp].unique())
    holdout_days = max(1, round(len(days) * holdout_share))
    validation_days = max(1, round(len(days) * validation_share))
    train_days = len(days) - holdout_days - validation_days
    if train_days < 1:
        raise ConfigurationError(
            f"{len(days)} labelled days cannot be split into train, validation and holdout"
        )
    validation_start = days[train_days]
    holdout_start = days[train_days + validation_days]
    stamps = frame[timestamp]
    return TimeSplit(
        train=frame[stamps < validation_start],
        validation=frame[(stamps >= validation_start) & (stamps < holdout_start)],
        holdout=frame[stamps >= holdout_start],
    )


def fit(
    split: TimeSplit, spec: FeatureSpec, label: str, hyperparameters: dict[str, Any], seed: int
) -> Pipeline:
    """Fit the encoder and the classifier, stopping early on the validation days."""
    encoder = ColumnTransformer(
        [
            (
                "categories",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan),
                spec.categorical,
            )
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    encoder.fit(split.train[spec.columns])
    classifier = XGBClassifier(
        **hyperparameters,
        objective="binary:logistic",
        eval_metric="logloss",
        tree_method="hist",
        enable_categorical=True,
        feature_types=["c"] * len(spec.categorical) + ["q"] * len(spec.numeric),
        random_state=seed,
        n_jobs=2,
    )
    classifier.fit(
        encoder.transform(split.train[spec.columns]),
        split.train[label],
        eval_set=[(encoder.transform(split.validation[spec.columns]), split.validation[label])],
        verbose=False,
    )
    return Pipeline([("encode", encoder), ("classify", classifier)])


def calibration_error(
    labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """Expected calibration error: mean |observed rate - mean score| over equal-width bins."""
    index = np.minimum((scores * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        chosen = index == b
        if chosen.any():
            total += chosen.sum() * abs(labels[chosen].mean() - scores[chosen].mean())
    return float(total / len(scores))


def classification_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The metrics every model is judged by; all but ROC/PR AUC are lower-is-better."""
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "log_loss": float(log_loss(labels, scores, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, scores)),
        "calibration_error": calibration_error(labels, scores),
    }


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


def train_and_register(
    settings: Settings,
    training_frame: pd.DataFrame,
    hyperparameter_overrides: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> TrainedModel:
    """Train on a point-in-time set; log everything to MLflow; register a new version."""
    import matplotlib.pyplot as plt
    import mlflow
    from mlflow.models import infer_signature

    names, training = settings.dataset, settings.training
    hyperparameters = merge_hyperparameters(training.hyperparameters, hyperparameter_overrides)
    spec = feature_spec(training_frame, [names.entity, names.timestamp, names.label])
    split = split_by_time(
        training_frame, names.timestamp, training.validation_share, training.holdout_share
    )
    model = fit(split, spec, names.label, hyperparameters, training.random_seed)
    holdout_scores = model.predict_proba(split.holdout[spec.columns])[:, 1]
    holdout_metrics = classification_metrics(split.holdout[names.label].to_numpy(), holdout_scores)
    validation_scores = model.predict_proba(split.validation[spec.columns])[:, 1]
    validation_metrics = classification_metrics(
        split.validation[names.label].to_numpy(), validation_scores
    )
    profile = drift.reference_profile(
        split.train[spec.columns],
        spec.categorical,
        holdout_scores,
        holdout_metrics,
        training.profile_bins,
        settings.drift,
    )
    stamps = training_frame[names.timestamp]
    lineage = {
        "feature_service": names.feature_service,
        "training_set.fingerprint": fingerprint(training_frame),
        "training_set.rows": str(len(training_frame)),
        "training_set.start": stamps.min().isoformat(),
        "training_set.end": stamps.max().isoformat(),
        "holdout.start": split.holdout[names.timestamp].min().isoformat(),
        "code_version": tracking.code_version(settings.project_root) or "unknown",
    }

    tracking.mlflow_client(settings)
    experiment = tracking.experiment_id(settings, training.model_name)
    with mlflow.start_run(experiment_id=experiment, run_name=f"train-{stamps.max().date()}") as run:
        mlflow.set_tags({**lineage, **(tags or {})})
        if lineage["code_version"] != "unknown":
            mlflow.set_tag("mlflow.source.git.commit", lineage["code_version"])
        mlflow.log_params(
            {**hyperparameters, "window_days": stamps.dt.date.nunique(), "features": spec.columns}
        )
        mlflow.log_input(
            mlflow.data.from_pandas(
                training_frame,
                name=f"{names.feature_service}-training-set",
                targets=names.label,
                digest=lineage["training_set.fingerprint"],
            ),
            context="training",
        )
        mlflow.log_metrics({f"holdout_{k}": v for k, v in holdout_metrics.items()})
        mlflow.log_metrics({f"validation_{k}": v for k, v in validation_metrics.items()})
        mlflow.log_metric("best_iteration", model.named_steps["classify"].best_iteration)
        for name, figure in _figures(model, split.holdout, spec, names.label).items():
            mlflow.log_figure(figure, f"plots/{name}")
            plt.close(figure)
        mlflow.log_dict(profile, "reference_profile.json")
        example = split.holdout[spec.columns].head(5)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict_proba(example)),
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            registered_model_name=training.model_name,
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
    version = str(info.registered_model_version)
    client = tracking.mlflow_client(settings)
    for key, value in lineage.items():
        client.set_model_version_tag(training.model_name, version, key, value)
    return TrainedModel(
        run_id=run.info.run_id,
        model_name=training.model_name,
        version=version,
        model_uri=f"models:/{training.model_name}/{version}",
        metrics={f"holdout_{k}": v for k, v in holdout_metrics.items()},
    )
