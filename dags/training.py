"""
### training

Trains a candidate model and promotes it only if it is better and sound.

1. **build_training_set**: labels known today, joined point-in-time with the
   model's Feast feature service, checked by the `training_set` expectation suite.
2. **train**: XGBoost, split by time with early stopping; everything is logged to
   MLflow (params, metrics, plots, lineage, reference profile) and a new version
   of the registered model is created, with its model card (decision pending).
3. **evaluate**: candidate and current champion are scored on the same latest
   holdout; value and change thresholds decide. The verdict is tagged on the version.
4. **infra_check**: the candidate is loaded from the registry in a fresh process
   and must give every sample row a valid probability.
5. **decide** → **approve** (only with `MLOPS_GATE__REQUIRE_APPROVAL=true`) →
   **promote** (`champion` moves, emits `model_promoted`) or **reject** (the
   candidate becomes `challenger`, with the reason); either one writes the decision
   on the version's model card.

Runs weekly (Sundays 03:00 UTC; the first time on the Sunday after the DAG is deployed:
deploying never starts a missed run), when `drift_monitor` requests retraining (its
reason is recorded on the MLflow run and in the audit trail), or by hand with the
form's parameters. One run at a time.

A request is checked before any work: Airflow refuses a trigger whose parameters break
their schemas (types, finite bounds, no unknown hyperparameter, metric or field, strict
YYYY-MM-DD days); `build_training_set` then fails at once, without retries, on a key
that is no parameter or a window that ends before it starts.
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

# The form's fields: their schemas (types, bounds, no unknown names) are the contract's,
# the ones the CLI and this DAG's first task check too.
_SCHEMAS = contracts.TRAINING_PARAM_SCHEMAS
_DEFAULTS = contracts.TRAINING_PARAM_DEFAULTS


def _alert_on_failure(context: Any) -> None:
    from pipelines.io.alerts import notify_failure

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
            _DEFAULTS["training_start"],
            title="Training window start",
            description="First prediction day to learn from (YYYY-MM-DD); empty: the latest "
            "window of labelled days.",
            **_SCHEMAS["training_start"],
        ),
        "training_end": Param(
            _DEFAULTS["training_end"],
            title="Training window end",
            description="Last prediction day to learn from (YYYY-MM-DD, not before the "
            "start); empty: the latest.",
            **_SCHEMAS["training_end"],
        ),
        "hyperparameters": Param(
            _DEFAULTS["hyperparameters"],
            title="Hyperparameter overrides",
            description='XGBoost settings to override, e.g. {"max_depth": 6}. Finite numbers '
            f"only: {contracts.hyperparameters_text()}.",
            **_SCHEMAS["hyperparameters"],
        ),
        "gate_overrides": Param(
            _DEFAULTS["gate_overrides"],
            title="Gate overrides",
            description='Per-metric thresholds, e.g. {"roc_auc": {"threshold": 0.7}}: '
            "threshold (a value of the metric), min_absolute_change (at most the metric's "
            "range), min_relative_change (0 to 1), for the metrics the gate judges.",
            **_SCHEMAS["gate_overrides"],
        ),
        "reason": Param(
            _DEFAULTS["reason"],
            title="Reason",
            description="Why this model is trained; kept on the MLflow run and the audit trail.",
            **_SCHEMAS["reason"],
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
        from pipelines.jobs import training as jobs

        # Airflow refused the trigger if a Param broke its schema; keys that are no Param
        # (Airflow keeps them) and a window ending before it starts are refused by the job.
        # Later tasks take the checked request from its result.
        conf = {**(dag_run.conf or {}), **(params or {})}
        return jobs.build_requested_training_set(conf, dag_run.run_after)

    @task
    def train(training_set: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
        from pipelines.jobs import training as jobs

        return jobs.train_model(training_set, {"airflow.run_id": run_id or ""})

    @task
    def evaluate(training_set: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
        from pipelines.jobs import training as jobs

        return jobs.evaluate_candidate(training_set, candidate)

    @task
    def infra_check(training_set: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
        from pipelines.jobs import training as jobs

        return jobs.check_infra(training_set, candidate)

    @task.branch
    def decide(gate: dict[str, Any], infra: dict[str, Any]) -> str | list[str]:
        from pipelines.jobs import training as jobs

        if not jobs.promotable(gate, infra):
            return "reject"
        return ["approve", "promote"] if jobs.approval_required() else "promote"

    approve = ApprovalOperator(
        task_id="approve",
        subject="Promote the candidate model to champion?",
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
        from pipelines.jobs import training as jobs

        moves = jobs.promote_candidate(candidate, gate, training_set, "airflow", run_id)
        outlet_events[MODEL_PROMOTED].extra = jobs.promotion_event(candidate, gate)
        return moves

    @task
    def reject(
        candidate: dict[str, Any],
        gate: dict[str, Any],
        infra: dict[str, Any],
        run_id: str | None = None,
    ) -> dict[str, Any]:
        from pipelines.jobs import training as jobs

        return jobs.reject_candidate(candidate, gate, infra, "airflow", run_id)

    training_set = build_training_set()
    candidate = train(training_set)
    gate = evaluate(training_set, candidate)
    infra = infra_check(training_set, candidate)
    route = decide(gate, infra)
    promoted = promote(candidate, gate, training_set)
    route >> [approve, promoted, reject(candidate, gate, infra)]
    approve >> promoted


training()
