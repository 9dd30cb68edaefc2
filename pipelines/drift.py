"""Reference profile of a model's data, stored with the model at training time.

The profile is compact (bin edges and counts, category frequencies, the
prediction histogram on the holdout), so drift checks later read only today's
data and this JSON, never the training set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

PREDICTION_BINS = 20


def numeric_profile(values: pd.Series, bins: int) -> dict[str, Any]:
    """Quantile bin edges of a numeric feature and the share of rows in each bin."""
    present = values.dropna().to_numpy(dtype=float)
    edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, bins + 1))) if len(present) else []
    inner = np.asarray(edges[1:-1], dtype=float)
    counts = np.bincount(np.searchsorted(inner, present, side="right"), minlength=len(inner) + 1)
    return {
        "kind": "numeric",
        "edges": [float(edge) for edge in edges],
        "counts": counts.astype(int).tolist(),
        "missing": int(values.isna().sum()),
        "quantiles": {
            str(q): float(np.quantile(present, q)) if len(present) else None
            for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
        },
        "mean": float(present.mean()) if len(present) else None,
    }


def categorical_profile(values: pd.Series) -> dict[str, Any]:
    """Frequency of each category of a categorical feature."""
    counts = values.astype("string").fillna("<missing>").value_counts()
    return {"kind": "categorical", "counts": {str(k): int(v) for k, v in counts.items()}}


def prediction_profile(scores: np.ndarray) -> dict[str, Any]:
    """Histogram of predicted probabilities on fixed bins over [0, 1]."""
    edges = np.linspace(0.0, 1.0, PREDICTION_BINS + 1)
    counts, _ = np.histogram(np.clip(scores, 0.0, 1.0), bins=edges)
    return {"edges": edges.tolist(), "counts": counts.astype(int).tolist()}


def reference_profile(
    features: pd.DataFrame,
    categorical: list[str],
    holdout_scores: np.ndarray,
    holdout_metrics: dict[str, float],
    bins: int,
) -> dict[str, Any]:
    """The drift reference of a model: its training features and its holdout behaviour."""
    profile = {
        column: categorical_profile(features[column])
        if column in categorical
        else numeric_profile(features[column], bins)
        for column in features.columns
    }
    return {
        "rows": len(features),
        "features": profile,
        "predictions": prediction_profile(holdout_scores),
        "holdout_metrics": holdout_metrics,
    }
