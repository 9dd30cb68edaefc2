"""Entry points of the `batch_scoring` DAG's tasks."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import date
from typing import TYPE_CHECKING, Any

from pipelines import contracts
from pipelines.settings import load_settings

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def plan_scoring(night: str | date | None) -> dict[str, Any]:
    """Fix the champion version and the shards of a night's scoring."""
    from pipelines.scoring import sharding

    return asdict(sharding.plan(load_settings(), contracts.as_night(night)))


def score_shard(scoring: dict[str, Any], shard: dict[str, int]) -> dict[str, Any]:
    """Score one shard of a night with the planned model version."""
    from pipelines.scoring import publishing, sharding

    return publishing.score_shard(load_settings(), sharding.ScoringPlan(**scoring), shard)


def publish_predictions(scoring: dict[str, Any]) -> dict[str, Any]:
    """Publish a night's scored shards as one partition, atomically (again: a no-op)."""
    from pipelines.scoring import publishing, sharding

    return publishing.publish(load_settings(), sharding.ScoringPlan(**scoring))


def shadow_score(scoring: dict[str, Any]) -> dict[str, Any]:
    """Shadow-score the challenger; a failure is reported, never raised."""
    from pipelines.scoring import shadowing, sharding

    settings = load_settings()
    try:
        return shadowing.shadow_score(settings, sharding.ScoringPlan(**scoring))
    except Exception as error:  # the champion's predictions are already out
        log.warning("shadow scoring of %s failed: %s", scoring["day"], error)
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"}
