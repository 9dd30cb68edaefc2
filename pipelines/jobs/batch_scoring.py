"""Entry points of the `batch_scoring` DAG's tasks: payloads in and out as XCom values."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from pipelines import contracts
from pipelines.contracts import XCom
from pipelines.settings import load_settings

log = logging.getLogger(__name__)


def plan_scoring(night: str | date | None) -> dict[str, Any]:
    """Fix the champion version and the shards of a night's scoring (a `ScoringPlan`)."""
    from pipelines.scoring import sharding

    return sharding.plan(load_settings(), contracts.as_night(night)).to_xcom()


def shards(scoring: XCom) -> list[contracts.Shard]:
    """The shards a plan maps `score_shard` over."""
    return contracts.ScoringPlan.from_xcom(scoring).shards


def score_shard(scoring: XCom, shard: contracts.Shard) -> dict[str, Any]:
    """Score one shard of a night with the planned model version (a `ScoredShard`)."""
    from pipelines.scoring import publishing

    plan = contracts.ScoringPlan.from_xcom(scoring)
    return publishing.score_shard(load_settings(), plan, shard).to_xcom()


def publish_predictions(scoring: XCom) -> dict[str, Any]:
    """Publish a night's scored shards as one partition, atomically (again: a no-op)."""
    from pipelines.scoring import publishing

    plan = contracts.ScoringPlan.from_xcom(scoring)
    return publishing.publish(load_settings(), plan).to_xcom()


def predictions_event(published: XCom) -> dict[str, Any]:
    """The `predictions` asset event's extra for a published night."""
    return contracts.PublishedPredictions.from_xcom(published).predictions_event()


def shadow_score(scoring: XCom) -> dict[str, Any]:
    """Shadow-score the challenger; a failure is reported, never raised."""
    from pipelines.scoring import shadowing

    plan = contracts.ScoringPlan.from_xcom(scoring)
    try:
        return shadowing.shadow_score(load_settings(), plan)
    except Exception as error:  # the champion's predictions are already out
        log.warning("shadow scoring of %s failed: %s", plan.day, error)
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"}
