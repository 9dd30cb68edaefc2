"""Reference profile of a model's data, stored with the model at training time.

The profile is compact (bin edges and counts, category frequencies, the
prediction histogram on the holdout), so drift checks later read only today's
data and this JSON, never the training set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.settings import Settings

PREDICTION_BINS = 20


def numeric_profile(values: pd.Series, bins: int) -> dict[str, Any]:
    """Bin edges of a numeric feature and the number of rows in each bin.

    Quantile edges in general. A feature with at most `bins` distinct values (counts
    such as payment failures, mostly 0) gets one bin per value, edges at the midpoints:
    its quantiles would collapse into one bin, whose PSI is 0 whatever today looks like.
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


EPSILON = 1e-4
Level = str  # "ok" | "warning" | "alert" | "too_few_rows"


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature against the reference profile."""

    feature: str
    kind: str
    score: float
    distance: float
    unseen_share: float
    level: Level


@dataclass(frozen=True)
class DriftReport:
    """One night's drift check (JSON-friendly)."""

    day: str
    model_version: str
    rows: int
    features: list[FeatureDrift]
    prediction_psi: float
    prediction_level: Level
    performance: dict[str, float] | None
    performance_level: Level
    alarm: bool
    reasons: list[str]

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.level == "alert"]


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    shares = counts / total if total else np.zeros_like(counts, dtype=float)
    return np.clip(shares, EPSILON, None)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two histograms on the same bins."""
    ref, cur = _shares(np.asarray(reference, float)), _shares(np.asarray(current, float))
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def binned_ks(reference: np.ndarray, current: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic computed from the two binned CDFs."""
    ref = np.cumsum(reference) / max(np.sum(reference), 1)
    cur = np.cumsum(current) / max(np.sum(current), 1)
    return float(np.max(np.abs(cur - ref)))


def numeric_counts(profile: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """Today's values counted in the reference's quantile bins."""
    inner = np.asarray(profile["edges"][1:-1], dtype=float)
    present = values[~np.isnan(values)]
    return np.bincount(np.searchsorted(inner, present, side="right"), minlength=len(inner) + 1)


def categorical_drift(reference: dict[str, int], current: dict[str, int]) -> tuple[float, float]:
    """Jensen-Shannon distance over the union of categories, and the share of unseen ones."""
    from scipy.spatial.distance import jensenshannon

    categories = sorted(set(reference) | set(current))
    ref = np.array([reference.get(c, 0) for c in categories], dtype=float)
    cur = np.array([current.get(c, 0) for c in categories], dtype=float)
    unseen = sum(count for c, count in current.items() if c not in reference)
    total = max(cur.sum(), 1.0)
    return float(jensenshannon(ref, cur, base=2)), float(unseen / total)


def level_of(value: float, warning: float, alert: float) -> Level:
    """Which level a drift score reaches."""
    return "alert" if value >= alert else "warning" if value >= warning else "ok"


def feature_drift(
    profile: dict[str, Any], frame: pd.DataFrame, settings: Settings
) -> list[FeatureDrift]:
    """Drift of every profiled feature of today's frame."""
    levels = settings.drift
    small = len(frame) < levels.min_rows
    results = []
    for feature, reference in profile["features"].items():
        if reference["kind"] == "numeric":
            current = numeric_counts(reference, frame[feature].to_numpy(dtype=float))
            score = psi(reference["counts"], current)
            distance, unseen = binned_ks(np.asarray(reference["counts"]), current), 0.0
            level = level_of(score, levels.numeric_psi.warning, levels.numeric_psi.alert)
        else:
            counts = categorical_profile(frame[feature])["counts"]
            score, unseen = categorical_drift(reference["counts"], counts)
            distance = score
            level = level_of(score, levels.categorical_js.warning, levels.categorical_js.alert)
        results.append(
            FeatureDrift(
                feature,
                reference["kind"],
                score,
                distance,
                unseen,
                "too_few_rows" if small else level,
            )
        )
    return results


def prediction_drift(profile: dict[str, Any], scores: np.ndarray) -> float:
    """PSI of today's score histogram against the holdout's."""
    edges = np.asarray(profile["predictions"]["edges"])
    current, _ = np.histogram(np.clip(scores, 0.0, 1.0), bins=edges)
    return psi(np.asarray(profile["predictions"]["counts"]), current)


def decide(
    drifted: list[FeatureDrift],
    prediction_level: Level,
    performance_level: Level,
    settings: Settings,
) -> list[str]:
    """Reasons to retrain; empty means no alarm."""
    reasons = []
    if len(drifted) >= settings.drift.min_drifted_features:
        named = ", ".join(f"{f.feature} ({f.score:.3f})" for f in drifted)
        reasons.append(f"{len(drifted)} features drifted: {named}")
    if prediction_level == "alert":
        reasons.append("prediction distribution drifted")
    if performance_level == "alert":
        reasons.append("realized ROC AUC fell beyond tolerance")
    return reasons
