"""Drift of today's data against a reference profile, and the night's decision.

Per feature: PSI and a binned KS statistic with the normed Wasserstein distance
(numeric), or the Jensen-Shannon distance and the unseen share (categorical); the
prediction PSI; levels against the settings' warning and alert thresholds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipelines.contracts import FeatureDrift, Level, RealizedPerformance
from pipelines.monitoring.profiling import categorical_profile
from pipelines.settings import Settings

# Evidently's floor on the reference standard deviation, so a constant feature divides safely.
MIN_NORM_STD = 1e-3


EPSILON = 1e-4


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
    policy = settings.project.drift
    for feature, reference in profile["features"].items():
        if policy.of(feature) == "ignored":
            continue
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
                "too_few_rows" if small else _as_policy_says(level, policy.of(feature)),
            )
        )
    return results


def _as_policy_says(level: Level, policy: str) -> Level:
    """A monotone feature's drift is expected: reported, never a warning or an alert."""
    return "expected" if policy == "monotone" and level != "ok" else level


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


def performance_drop(value: float, holdout: float, settings: Settings) -> tuple[float, Level]:
    """How far a realized ROC AUC fell below the holdout's, and the level that reaches."""
    drop = holdout - value
    levels = settings.drift.roc_auc_drop
    return drop, level_of(drop, levels.warning, levels.alert)


def scoring_performance(
    performance: list[RealizedPerformance], version: str
) -> RealizedPerformance | None:
    """The realized performance of the version that scored tonight, if its predictions got
    labels: the only one the alarm judges, since retraining replaces the model that scores
    now (an older version's drop is reported, not acted on)."""
    return next((item for item in performance if item.model_version == version), None)


def decide(
    drifted: list[FeatureDrift],
    prediction_level: Level,
    performance: RealizedPerformance | None,
    settings: Settings,
) -> list[str]:
    """Reasons to retrain; empty means no alarm. `performance` is that of the version that
    scored tonight."""
    reasons = []
    if len(drifted) >= settings.drift.min_drifted_features:
        named = ", ".join(describe(f) for f in drifted)
        reasons.append(f"{len(drifted)} features drifted: {named}")
    if prediction_level == "alert":
        reasons.append("prediction distribution drifted")
    if performance is not None and performance.level == "alert":
        reasons.append(
            f"realized ROC AUC of version {performance.model_version} fell "
            f"{performance.roc_auc_drop:.3f} below its holdout's, beyond tolerance "
            f"({performance.rows} labelled predictions)"
        )
    return reasons
