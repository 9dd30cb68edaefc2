"""Reference profile of a model's data, stored with the model at training time.

The profile is compact (bin edges and counts, a quantile function per numeric
feature, category frequencies, the prediction histogram on the holdout), so drift
checks later read only today's data and this JSON, never the training set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipelines.settings import DriftSettings

PREDICTION_BINS = 20
# The profile's artifact in the MLflow run of the model it describes.
PROFILE_ARTIFACT = "reference_profile.json"


# The outermost tail quantiles: past one row in a million, the last interpolated segment
# (up to the minimum or maximum) holds too little mass to move the Wasserstein distance.
SMALLEST_TAIL_PROBABILITY = 1e-6


def quantile_grid(points: int, tail_points: int) -> np.ndarray:
    """Probabilities of the profile's quantiles: evenly spaced, plus log-spaced in each tail.

    The tails get their own points because linear interpolation from the last even quantile
    to the maximum is far off for skewed features, and the Wasserstein distance adds it up.
    """
    even = np.linspace(0.0, 1.0, points)
    tail = np.geomspace(SMALLEST_TAIL_PROBABILITY, even[1], tail_points, endpoint=False)
    return np.unique(np.concatenate([even, tail, 1.0 - tail]))


def quantile_function(present: np.ndarray, grid: np.ndarray, steps: int) -> dict[str, list[float]]:
    """Knots (p, x) of the reference's quantile function, interpolated linearly between them.

    Knots sit at the grid's quantiles and at both ends of the `steps` most frequent values
    and of the `steps` widest gaps between consecutive values. Linear interpolation fails
    exactly there: the quantile function is flat across a repeated value (a count such as
    sessions = 0) and jumps across a gap (between plans' price bands). With at most
    `steps` distinct values the function is exact.
    """
    values, counts = np.unique(present, return_counts=True)
    cumulative = np.cumsum(counts)
    ends = cumulative / len(present)
    starts = np.concatenate([[0], cumulative[:-1]]) / len(present)
    frequent = np.argsort(-counts, kind="stable")[:steps]
    gaps = np.argsort(-np.diff(values), kind="stable")[:steps]  # from values[g] to values[g+1]
    p = np.concatenate([grid, starts[frequent], ends[frequent], ends[gaps], ends[gaps]])
    x = np.concatenate(
        [
            np.quantile(present, grid, method="inverted_cdf"),
            values[frequent],
            values[frequent],
            values[gaps],
            values[gaps + 1],
        ]
    )
    # All knots lie on one non-decreasing function, so sorting each coordinate pairs them
    # again (and irons out float ties where one value's end meets the next one's start).
    return {"p": np.sort(p).tolist(), "x": np.sort(x).tolist()}


def numeric_profile(values: pd.Series, bins: int, drift: DriftSettings) -> dict[str, Any]:
    """Bin edges and counts, quantile function, mean and std of a numeric feature.

    Quantile edges in general. A feature with at most `bins` distinct values (counts
    such as payment failures, mostly 0) gets one bin per value, edges at the midpoints:
    its quantiles would collapse into one bin, whose PSI is 0 whatever today looks like.
    The quantile function and the standard deviation (ddof 0, as Evidently's) give the
    normed Wasserstein distance later.
    """
    present = values.dropna().to_numpy(dtype=float)
    distinct = np.unique(present)
    if 1 < len(distinct) <= bins:
        middles = (distinct[:-1] + distinct[1:]) / 2.0
        edges = np.concatenate([distinct[:1], middles, distinct[-1:]])
    elif len(present):
        edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, bins + 1)))
    else:
        edges = np.array([])
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
        "std": float(present.std()) if len(present) else None,
        "quantile_function": quantile_function(
            present,
            quantile_grid(drift.profile_quantiles, drift.profile_tail_quantiles),
            drift.profile_steps,
        )
        if len(present)
        else None,
    }


def categorical_profile(values: pd.Series) -> dict[str, Any]:
    """Frequency of each category of a categorical feature."""
    # Count first, then name the (few) categories: casting a million rows to strings
    # before counting costs a quarter of a second per column.
    raw = values.value_counts(dropna=False)
    names = raw.index.map(lambda k: "<missing>" if pd.isna(k) else str(k))
    counts = raw.groupby(names).sum().sort_values(ascending=False)
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
    drift: DriftSettings,
) -> dict[str, Any]:
    """The drift reference of a model: its training features and its holdout behaviour."""
    profile = {
        column: categorical_profile(features[column])
        if column in categorical
        else numeric_profile(features[column], bins, drift)
        for column in features.columns
    }
    return {
        "rows": len(features),
        "features": profile,
        "predictions": prediction_profile(holdout_scores),
        "holdout_metrics": holdout_metrics,
    }
