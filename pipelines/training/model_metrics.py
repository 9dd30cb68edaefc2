"""Classification metrics shared by training, the gate and monitoring."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

CALIBRATION_BINS = 10


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
