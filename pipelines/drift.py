"""Reference profile of a model's data, stored with the model at training time.

The profile is compact (bin edges and counts, a quantile function per numeric
feature, category frequencies, the prediction histogram on the holdout), so drift
checks later read only today's data and this JSON, never the training set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.settings import DriftSettings, Settings

PREDICTION_BINS = 20
# The outermost tail quantiles: past one row in a million, the last interpolated segment
# (up to the minimum or maximum) holds too little mass to move the Wasserstein distance.
SMALLEST_TAIL_PROBABILITY = 1e-6
# Evidently's floor on the reference standard deviation, so a constant feature divides safely.
MIN_NORM_STD = 1e-3


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


EPSILON = 1e-4
Level = str  # "ok" | "warning" | "alert" | "too_few_rows"


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature against the reference profile."""

    feature: str
    kind: str
    score: float  # numeric: PSI; categorical: Jensen-Shannon distance
    distance: float  # numeric: binned KS statistic; categorical: Jensen-Shannon distance
    wasserstein: float | None  # numeric: W1 in reference standard deviations; else None
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


def wasserstein_normed(profile: dict[str, Any], values: np.ndarray) -> float | None:
    """Wasserstein distance (W1) from the reference to today, in reference standard deviations.

    W1 is the integral over p of |Q_ref(p) - Q_today(p)|. Today's quantile function is
    exact: sorted, its k-th value holds p in [k/n, (k+1)/n), evaluated at the middle of
    that step. The reference's comes from the profile's knots. Evidently's "Wasserstein
    distance (normed)" is the same quantity on raw reference rows. None when there is
    nothing to compare: no values on one side, or a profile built before it had knots.
    """
    knots = profile.get("quantile_function")
    today = np.sort(values[~np.isnan(values)])
    if knots is None or not len(today):
        return None
    middles = (np.arange(len(today)) + 0.5) / len(today)
    reference = np.interp(middles, knots["p"], knots["x"])
    return float(np.mean(np.abs(reference - today)) / max(profile["std"], MIN_NORM_STD))


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


def worst(*levels: Level) -> Level:
    """The most severe of several "ok" / "warning" / "alert" levels."""
    return max(levels, key=("ok", "warning", "alert").index)


def feature_drift(
    profile: dict[str, Any], frame: pd.DataFrame, settings: Settings
) -> list[FeatureDrift]:
    """Drift of every profiled feature of today's frame.

    A numeric feature's level is the worse of its PSI level and, on nights with enough
    rows for it, its normed Wasserstein level.
    """
    levels = settings.drift
    small = len(frame) < levels.min_rows
    wasserstein_counts = len(frame) >= levels.numeric_wasserstein_min_rows
    results = []
    for feature, reference in profile["features"].items():
        wasserstein = None
        if reference["kind"] == "numeric":
            values = frame[feature].to_numpy(dtype=float)
            current = numeric_counts(reference, values)
            score = psi(reference["counts"], current)
            distance, unseen = binned_ks(np.asarray(reference["counts"]), current), 0.0
            wasserstein = wasserstein_normed(reference, values)
            level = level_of(score, levels.numeric_psi.warning, levels.numeric_psi.alert)
            if wasserstein is not None and wasserstein_counts:
                w_levels = levels.numeric_wasserstein
                level = worst(level, level_of(wasserstein, w_levels.warning, w_levels.alert))
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
                wasserstein,
                unseen,
                "too_few_rows" if small else level,
            )
        )
    return results


def describe(item: FeatureDrift) -> str:
    """A feature's drift scores in words, e.g. "sessions (PSI 0.412, Wasserstein 0.350)"."""
    if item.kind != "numeric":
        return f"{item.feature} (JS {item.score:.3f})"
    if item.wasserstein is None:
        return f"{item.feature} (PSI {item.score:.3f})"
    return f"{item.feature} (PSI {item.score:.3f}, Wasserstein {item.wasserstein:.3f})"


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
        named = ", ".join(describe(f) for f in drifted)
        reasons.append(f"{len(drifted)} features drifted: {named}")
    if prediction_level == "alert":
        reasons.append("prediction distribution drifted")
    if performance_level == "alert":
        reasons.append("realized ROC AUC fell beyond tolerance")
    return reasons
