"""The steps the crash suite kills, each as the DAG tasks run it: through `pipelines.jobs`.

Run in a child process (`python -c "from tests.crash import steps; steps.run('scoring')"`)
with `MLOPS_CRASH_POINT` set, a step dies by SIGKILL at that point; run again in the
test's own process, it must finish the work as if nothing had happened.
"""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

from pipelines.jobs import batch_scoring, feature_pipeline, model_rollback, training

# The world of the crash suite (`test_crash_points.template`).
DAY = date(2026, 1, 8)  # scored and materialized in the trials
NIGHT = date(2026, 1, 9)  # landed raw, validated in the trials
CHAMPION, REJECTED, CANDIDATE = "1", "2", "3"  # v3 is also the challenger
RUN = "scheduled__crash-suite"
TRAINING_SET = "training_set.parquet"  # under the state root


def ingest() -> Any:
    feature_pipeline.validate_partition(NIGHT)
    return feature_pipeline.publish_partition(NIGHT)


def materialize() -> Any:
    return feature_pipeline.materialize(DAY)


def scoring() -> Any:
    plan = batch_scoring.plan_scoring(DAY)
    for shard in plan["shards"]:
        batch_scoring.score_shard(plan, shard)
    return batch_scoring.publish_predictions(plan)


def shadow() -> Any:
    """The challenger's shadow scoring of a night whose champion predictions are out."""
    return batch_scoring.shadow_score(batch_scoring.plan_scoring(DAY))


def promote() -> Any:
    return training.promote_candidate(CANDIDATE, CHAMPION, "crash suite", "airflow", RUN)


def reject() -> Any:
    return training.reject_candidate(REJECTED, "worse than the champion", "airflow", RUN)


def rollback() -> Any:
    target = model_rollback.rollback_target(None, RUN)
    return model_rollback.apply_rollback(target, "scores look wrong", "airflow", RUN)


def train() -> Any:
    return training.train_model(
        _training_set(), {"n_estimators": 400, "early_stopping_rounds": 400}
    )


def infra_check() -> Any:
    return training.check_infra(_training_set(), CANDIDATE)


def _training_set() -> str:
    from pipelines.settings import load_settings

    return str(load_settings().state_root / TRAINING_SET)


def run(name: str) -> Any:
    """Run one step by name."""
    return getattr(sys.modules[__name__], name)()
