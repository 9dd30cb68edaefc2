"""
### model_rollback

Restores a previous champion of the churn model: by default the version aliased
`previous_champion`, or the version given in the trigger form. The move is
recorded in the registry's audit trail with the reason given.

Manual only. Same as `python -m pipelines rollback [--to VERSION]`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task


def _alert_on_failure(context: Any) -> None:
    from pipelines.alerts import notify_failure

    notify_failure(context)


@dag(
    dag_id="model_rollback",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
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
        "on_failure_callback": [_alert_on_failure],
    },
)
def model_rollback() -> None:
    @task
    def rollback(
        params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        from pipelines import jobs

        return jobs.rollback(params["to_version"], params["reason"], "airflow", run_id)

    rollback()


model_rollback()
