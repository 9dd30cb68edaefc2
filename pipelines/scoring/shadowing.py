"""Shadow scoring with the challenger, and its agreement with the champion."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import pyarrow.parquet as pq

from pipelines import contracts
from pipelines.contracts import ScoringPlan
from pipelines.io import tracking
from pipelines.registry import model_versions
from pipelines.scoring.publishing import (
    PREDICTIONS,
    SHADOW_PREDICTIONS,
    partition,
    publish,
    score_shard,
)
from pipelines.scoring.sharding import plan
from pipelines.settings import Settings


def agreement(settings: Settings, day: date) -> dict[str, float | None]:
    """How the shadow (challenger) predictions of a night agree with the champion's.

    A measure that is undefined (the rank correlation of a constant model's scores) is
    None: a NaN would fail the task's JSON result and the MLflow metric alike.
    """
    from scipy.stats import spearmanr

    names = settings.project
    out = names.scoring
    columns = [names.entity.column, out.score_column, out.predicted_label_column]
    champion = pq.read_table(partition(settings, PREDICTIONS, day), columns=columns).to_pandas()
    shadow = pq.read_table(partition(settings, SHADOW_PREDICTIONS, day), columns=columns)
    both = champion.merge(shadow.to_pandas(), on=names.entity.column, suffixes=("", "_shadow"))
    scores, shadow_scores = both[out.score_column], both[f"{out.score_column}_shadow"]
    labels = both[out.predicted_label_column]
    constant = scores.nunique() < 2 or shadow_scores.nunique() < 2
    measures = {
        "rows_compared": float(len(both)),
        "rank_correlation": None if constant else spearmanr(scores, shadow_scores).statistic,
        "mean_absolute_difference": (scores - shadow_scores).abs().mean(),
        "flipped_label_share": (labels != both[f"{out.predicted_label_column}_shadow"]).mean(),
    }
    return {
        name: float(value) if value is not None and math.isfinite(value) else None
        for name, value in measures.items()
    }


def shadow_score(settings: Settings, champion: ScoringPlan) -> dict[str, Any]:
    """Score the challenger (if any) beside the champion and log their agreement to MLflow."""
    import mlflow

    day = date.fromisoformat(champion.day)
    challenger = model_versions.alias_version(settings, contracts.CHALLENGER)
    if not settings.scoring.shadow or challenger is None:
        return {"status": "skipped", "reason": "no challenger" if challenger is None else "off"}
    scoring = plan(settings, day, contracts.CHALLENGER)
    for shard in scoring.shards:
        score_shard(settings, scoring, shard, SHADOW_PREDICTIONS)
    published = publish(settings, scoring, SHADOW_PREDICTIONS)
    metrics = agreement(settings, day)
    experiment = tracking.experiment_id(
        settings, contracts.shadow_experiment(settings.project.model.name)
    )
    with mlflow.start_run(experiment_id=experiment, run_name=f"shadow-{champion.day}"):
        mlflow.set_tags(
            {
                "date": champion.day,
                "champion_version": champion.model_version,
                "challenger_version": scoring.model_version,
            }
        )
        mlflow.log_metrics({name: value for name, value in metrics.items() if value is not None})
    scored = {"status": "scored", "challenger_version": scoring.model_version}
    return scored | published.to_xcom() | metrics
