"""
### model_rollback

Restores a previous champion of the model: by default the version aliased
`previous_champion`, or the version given in the trigger form. The move is
recorded in the registry's audit trail with the reason given.

1. **choose_target**: fixes, once, which version becomes champion and which one it
   replaces (run again, it finds what this run already decided and moved).
2. **rollback**: moves the aliases to that target. A retry or a clear of the run, after a
   crash or a success, completes the same rollback; it never rolls back a second time.

Manual only. Same as `python -m pipelines rollback [--to VERSION]`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import (
    ExceptionRetryPolicy,
    Param,
    RetryAction,
    RetryRule,
    dag,
    task,
)

from pipelines import contracts


def _alert_on_failure(context: Any) -> None:
    from pipelines.io.alerts import notify_failure

    notify_failure(context)


@dag(
    dag_id="model_rollback",
    schedule=None,
    max_active_runs=1,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["registry", "operations"],
    params={
        "to_version": Param(
            None,
            type=["null", "string"],
            pattern=r"^[0-9]+$",
            title="Version to restore",
            description="Registered model version; empty: the previous champion.",
        ),
        "reason": Param(
            "manual rollback",
            type="string",
            minLength=3,
            maxLength=500,
            title="Reason",
            description="Why the champion is rolled back; kept in the audit trail.",
        ),
    },
    default_args={
        "owner": "ml-platform",
        "retries": 1,
        "retry_delay": timedelta(minutes=1),
        "retry_policy": ExceptionRetryPolicy(
            rules=[
                RetryRule(
                    exception=contracts.PERMANENT_ERROR,
                    action=RetryAction.FAIL,
                    reason="no such version, or the champion moved: a person must decide",
                )
            ]
        ),
        "on_failure_callback": [_alert_on_failure],
    },
)
def model_rollback() -> None:
    @task
    def choose_target(
        params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        from pipelines.jobs import model_rollback as jobs

        return jobs.rollback_target(params["to_version"], run_id)

    @task
    def rollback(
        target: dict[str, Any],
        params: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> list[dict[str, Any]]:
        from pipelines.jobs import model_rollback as jobs

        return jobs.apply_rollback(target, params["reason"], "airflow", run_id)

    rollback(choose_target())


model_rollback()
