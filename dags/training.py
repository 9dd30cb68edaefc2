"""
### training

Trains a candidate churn model and promotes it only if it is better and sound.

1. **build_training_set**: labels known today, joined point-in-time with the
   model's Feast feature service, checked by the `training_set` expectation suite.
2. **train**: XGBoost, split by time with early stopping; everything is logged to
   MLflow (params, metrics, plots, lineage, reference profile) and a new version
   of the registered model is created.
3. **evaluate**: candidate and current champion are scored on the same latest
   holdout; value and change thresholds decide. The verdict is tagged on the version.
4. **infra_check**: the candidate is loaded from the registry in a fresh process
   and must give every sample row a valid probability.
5. **decide** → **approve** (only with `MLOPS_GATE__REQUIRE_APPROVAL=true`) →
   **promote** (`champion` moves, emits `model_promoted`) or **reject** (the
   candidate becomes `challenger`, with the reason).

Runs weekly (Sundays 03:00 UTC; the first time on the Sunday after the DAG is deployed:
deploying never starts a missed run), when `drift_monitor` requests retraining (its
reason is recorded on the MLflow run and in the audit trail), or by hand with the
form's parameters. One run at a time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import (
    Asset,
    CronTriggerTimetable,
    ExceptionRetryPolicy,
    Param,
    RetryAction,
    RetryRule,
    dag,
    task,
)

from pipelines import contracts

MODEL_PROMOTED = Asset(contracts.MODEL_PROMOTED)

_NON_NEGATIVE = {"type": "number", "minimum": 0}
HYPERPARAMETER_SCHEMA = {
    "n_estimators": {"type": "integer", "minimum": 1, "maximum": 5000},
    "max_depth": {"type": "integer", "minimum": 1, "maximum": 16},
    "learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "subsample": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "colsample_bytree": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "min_child_weight": _NON_NEGATIVE,
    "reg_lambda": _NON_NEGATIVE,
    "reg_alpha": _NON_NEGATIVE,
    "gamma": _NON_NEGATIVE,
    "early_stopping_rounds": {"type": "integer", "minimum": 1, "maximum": 1000},
}
GATE_OVERRIDE_SCHEMA = {
    "type": "object",
    "properties": {
        "threshold": {"type": "number"},
        "min_absolute_change": _NON_NEGATIVE,
        "min_relative_change": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "additionalProperties": False,
}


def _alert_on_failure(context: Any) -> None:
    from pipelines.alerts import notify_failure

    notify_failure(context)


@dag(
    dag_id="training",
    # No start date and no immediate run: the first weekly run is the next one after
    # deployment, so deploying never starts a missed run that could promote a model at once.
    schedule=CronTriggerTimetable(
        contracts.WEEKLY_TRAINING_CRON,
        timezone=contracts.SCHEDULE_TIMEZONE,
        run_immediately=timedelta(0),
    ),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["training", "registry"],
    params={
        "training_start": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Training window start",
            description="First prediction day to learn from (YYYY-MM-DD); empty: the latest "
            "window of labelled days.",
        ),
        "training_end": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Training window end",
            description="Last prediction day to learn from (YYYY-MM-DD); empty: the latest.",
        ),
        "hyperparameters": Param(
            {},
            type="object",
            properties=HYPERPARAMETER_SCHEMA,
            additionalProperties=False,
            title="Hyperparameter overrides",
            description='XGBoost settings to override, e.g. {"max_depth": 6}.',
        ),
        "gate_overrides": Param(
            {},
            type="object",
            properties={"roc_auc": GATE_OVERRIDE_SCHEMA, "log_loss": GATE_OVERRIDE_SCHEMA},
            additionalProperties=False,
            title="Gate overrides",
            description='Per-metric thresholds, e.g. {"roc_auc": {"threshold": 0.7}}.',
        ),
        "reason": Param(
            "manual or scheduled retraining",
            type="string",
            minLength=3,
            maxLength=contracts.MAX_REASON_CHARS,
            title="Reason",
            description="Why this model is trained; kept on the MLflow run and the audit trail.",
        ),
    },
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "retry_policy": ExceptionRetryPolicy(
            rules=[
                RetryRule(
                    exception=contracts.PERMANENT_ERROR,
                    action=RetryAction.FAIL,
                    reason="a data, configuration or registry conflict needs a person",
                )
            ]
        ),
        "on_failure_callback": [_alert_on_failure],
    },
)
def training() -> None:
    @task
    def build_training_set(
        params: dict[str, Any] | None = None, dag_run: Any = None
    ) -> dict[str, Any]:
        from pipelines import jobs

        return jobs.build_training_set(
            dag_run.run_after, params["training_start"], params["training_end"]
        ) | {"reason": params["reason"]}

    @task
    def train(
        training_set: dict[str, Any],
        params: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        from pipelines import jobs

        tags = {"reason": training_set["reason"], "airflow.run_id": run_id}
        return jobs.train_model(training_set["path"], params["hyperparameters"], tags)

    @task
    def evaluate(
        training_set: dict[str, Any],
        candidate: dict[str, Any],
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        from pipelines import jobs

        return jobs.evaluate_candidate(
            training_set["path"], candidate["version"], params["gate_overrides"]
        )

    @task
    def infra_check(training_set: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
        from pipelines import jobs

        return jobs.check_infra(training_set["path"], candidate["version"])

    @task.branch
    def decide(gate: dict[str, Any], infra: dict[str, Any]) -> str | list[str]:
        from pipelines import jobs

        return jobs.promotion_route(gate, infra)

    approve = ApprovalOperator(
        task_id="approve",
        subject="Promote the candidate churn model to champion?",
        body="The candidate passed the evaluation gate and the infra check. "
        "See the `evaluate` task's result and the model version's tags in MLflow.",
        response_timeout=timedelta(days=2),
    )

    @task(outlets=[MODEL_PROMOTED], trigger_rule="none_failed_min_one_success")
    def promote(
        candidate: dict[str, Any],
        gate: dict[str, Any],
        training_set: dict[str, Any],
        run_id: str | None = None,
        outlet_events: Any = None,
    ) -> list[dict[str, Any]]:
        from pipelines import jobs

        moves = jobs.promote_candidate(
            candidate["version"],
            gate["champion_version"],
            training_set["reason"],
            "airflow",
            run_id,
        )
        outlet_events[MODEL_PROMOTED].extra = {
            "version": candidate["version"],
            "previous": gate["champion_version"],
        }
        return moves

    @task
    def reject(
        candidate: dict[str, Any],
        gate: dict[str, Any],
        infra: dict[str, Any],
        run_id: str | None = None,
    ) -> dict[str, Any]:
        from pipelines import jobs

        return jobs.reject_candidate(
            candidate["version"], jobs.rejection_reason(gate, infra), "airflow", run_id
        )

    training_set = build_training_set()
    candidate = train(training_set)
    gate = evaluate(training_set, candidate)
    infra = infra_check(training_set, candidate)
    route = decide(gate, infra)
    promoted = promote(candidate, gate, training_set)
    route >> [approve, promoted, reject(candidate, gate, infra)]
    approve >> promoted


training()
