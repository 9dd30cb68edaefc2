"""Fitting the model: XGBoost in a scikit-learn pipeline.

The split is by time (train, then validation, then holdout, by prediction day);
early stopping watches the validation days. Categorical features are ordinal-
encoded and declared categorical to XGBoost, so it splits on categories rather
than on arbitrary codes; a category unseen in training becomes missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from xgboost import XGBClassifier

from pipelines import contracts
from pipelines.training.splits import FeatureSpec, TimeSplit

# The hyperparameters a run may override, with their bounds: the contract's (defaults:
# the project's `model.hyperparameters`).
HYPERPARAMETERS = contracts.HYPERPARAMETER_BOUNDS


def merge_hyperparameters(
    defaults: dict[str, Any], overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """The project's hyperparameters with per-run overrides, checked against the contract's
    bounds (unknown names, text, NaN, infinities: a `ConfigurationError` naming the field)."""
    return {
        **contracts.check_hyperparameters(defaults, "model.hyperparameters"),
        **contracts.check_hyperparameters(overrides or {}),
    }


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
