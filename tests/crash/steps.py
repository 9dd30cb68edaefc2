"""The steps the crash suite kills, each as the DAG tasks run it: through `pipelines.jobs`.

Run in a child process (`python -c "from tests.crash import steps; steps.run('scoring')"`)
with `MLOPS_CRASH_POINT` set, a step dies by SIGKILL at that point; run again in the
test's own process, it must finish the work as if nothing had happened.
"""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

from pipelines import contracts
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
    gate = _gate(CANDIDATE, passed=True)
    return training.promote_candidate(_candidate(CANDIDATE), gate, _training_set(), "airflow", RUN)


def reject() -> Any:
    gate, infra = _gate(REJECTED, passed=False), contracts.InfraCheck(True, 1, 1.0, "ok")
    return training.reject_candidate(_candidate(REJECTED), gate, infra.to_xcom(), "airflow", RUN)


def rollback() -> Any:
    target = model_rollback.rollback_target(None, RUN)
    return model_rollback.apply_rollback(target, "scores look wrong", "airflow", RUN)


def train() -> Any:
    return training.train_model(_training_set({"n_estimators": 400, "early_stopping_rounds": 400}))


def infra_check() -> Any:
    return training.check_infra(_training_set(), _candidate(CANDIDATE))


def _training_set(hyperparameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The saved training set of the suite's world, as the `training` DAG's payload."""
    from pipelines.settings import load_settings

    path = str(load_settings().state_root / TRAINING_SET)
    request = contracts.TrainingRequest(None, None, hyperparameters or {}, {}, "crash suite")
    return contracts.TrainingSet(path, 0, 0.0, "", "", request).to_xcom()


def _candidate(version: str) -> dict[str, Any]:
    """A registered version, as `train` hands it on."""
    return contracts.TrainedModel("", "churn", version, "", {}).to_xcom()


def _gate(version: str, passed: bool) -> dict[str, Any]:
    """The gate's verdict on a version against the suite's champion."""
    reasons = [] if passed else ["worse than the champion"]
    return contracts.GateDecision(passed, reasons, version, CHAMPION, {}).to_xcom()


def run(name: str) -> Any:
    """Run one step by name."""
    return getattr(sys.modules[__name__], name)()
