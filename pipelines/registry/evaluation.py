"""The evaluation gate: a candidate against thresholds and against the champion."""

from __future__ import annotations

import json
import math

import pandas as pd

from pipelines.contracts import CHAMPION, GateDecision, InfraCheck
from pipelines.errors import PromotionError
from pipelines.io import tracking
from pipelines.project import MetricThreshold
from pipelines.registry.model_versions import alias_version, score
from pipelines.settings import Settings


def _at_least(value: float, bound: float) -> bool:
    # A tolerance keeps "exactly at the bound" passing despite float rounding.
    return value >= bound or math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12)


def _at_most(value: float, bound: float) -> bool:
    return value <= bound or math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12)


def check_thresholds(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    thresholds: tuple[MetricThreshold, ...],
) -> list[str]:
    """Every threshold the candidate misses, in words; empty means it passes."""
    failures = []
    for rule in thresholds:
        value = candidate[rule.metric]
        better = _at_least if rule.greater_is_better else _at_most
        word = "at least" if rule.greater_is_better else "at most"
        if rule.threshold is not None and not better(value, rule.threshold):
            failures.append(f"{rule.metric} {value:.4f} is not {word} {rule.threshold:.4f}")
        if champion is None:
            continue
        base = champion[rule.metric]
        sign = 1 if rule.greater_is_better else -1
        if rule.min_absolute_change is not None:
            needed = base + sign * rule.min_absolute_change
            if not better(value, needed):
                failures.append(
                    f"{rule.metric} {value:.4f} is not {word} {needed:.4f} "
                    f"(champion {base:.4f}, required change {rule.min_absolute_change})"
                )
        if rule.min_relative_change is not None:
            needed = base + sign * rule.min_relative_change * abs(base)
            if not better(value, needed):
                failures.append(
                    f"{rule.metric} {value:.4f} is not {word} {needed:.4f} "
                    f"(champion {base:.4f}, required relative change {rule.min_relative_change})"
                )
    return failures


def thresholds_with_overrides(
    thresholds: tuple[MetricThreshold, ...], overrides: dict[str, dict[str, float]] | None
) -> tuple[MetricThreshold, ...]:
    """The gate's thresholds with per-run overrides keyed by metric name."""
    by_metric = {rule.metric: rule for rule in thresholds}
    for metric, changes in (overrides or {}).items():
        if metric not in by_metric:
            raise PromotionError(f"gate override names unknown metric {metric!r}")
        by_metric[metric] = MetricThreshold.model_validate(
            {**by_metric[metric].model_dump(), **changes}
        )
    return tuple(by_metric.values())


def evaluate(
    settings: Settings,
    candidate_version: str,
    holdout: pd.DataFrame,
    overrides: dict[str, dict[str, float]] | None = None,
) -> GateDecision:
    """Score candidate and champion on the same holdout and apply the thresholds.

    The decision and every metric behind it are recorded as tags on the candidate.
    """
    from pipelines.training.model_metrics import classification_metrics

    labels = holdout[settings.project.label.column].to_numpy()
    candidate = classification_metrics(labels, score(settings, candidate_version, holdout))
    champion_version = alias_version(settings, CHAMPION)
    champion = (
        classification_metrics(labels, score(settings, champion_version, holdout))
        if champion_version
        else None
    )
    thresholds = thresholds_with_overrides(settings.project.model.gate, overrides)
    failures = check_thresholds(candidate, champion, thresholds)
    decision = GateDecision(
        passed=not failures,
        reasons=failures or ["every threshold holds"],
        candidate_version=candidate_version,
        champion_version=champion_version,
        candidate_metrics=candidate,
        champion_metrics=champion or {},
    )
    tags = {
        "gate.passed": str(decision.passed).lower(),
        "gate.reasons": "; ".join(decision.reasons),
        "gate.champion_version": champion_version or "none",
        "gate.thresholds": json.dumps([rule.model_dump() for rule in thresholds]),
        **{f"gate.candidate.{k}": f"{v:.6f}" for k, v in candidate.items()},
        **{f"gate.champion.{k}": f"{v:.6f}" for k, v in (champion or {}).items()},
    }
    client = tracking.mlflow_client(settings)
    for key, value in tags.items():
        client.set_model_version_tag(settings.project.model.name, candidate_version, key, value)
    return decision


def rejection_reason(gate: GateDecision, infra: InfraCheck) -> str:
    """Why a candidate was not promoted, in one line."""
    reasons = [] if gate.passed else [f"gate: {'; '.join(gate.reasons)}"]
    if not infra.passed:
        reasons.append(f"infra check: {infra.detail}")
    return " | ".join(reasons) or "not approved"
