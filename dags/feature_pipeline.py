"""
### feature_pipeline

Nightly, for each day's data interval:

1. **check_landed**: the raw activity partition of the day is in the lake. A late
   partition is retried with backoff; after the last retry the run fails and names
   the missing path.
2. **validate**: the Great Expectations checkpoint runs on it. A failing or
   unreadable partition is quarantined with its validation result, the task fails
   at once (no retries: bad bytes stay bad) and names every failed expectation.
3. **publish**: the validated partition is renamed into the validated zone, the
   only place Feast reads.
4. **materialize**: the interval (plus a small overlap for late rows) is written
   into the Feast online store; emits the `features` asset with the date and rows.

A manual run at logical date T processes the last complete day before T.
Logic lives in `pipelines/`; this file only wires it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import (
    Asset,
    CronDataIntervalTimetable,
    ExceptionRetryPolicy,
    RetryAction,
    RetryRule,
    dag,
    task,
)

FEATURES = Asset("features")


def _alert_on_failure(context: Any) -> None:
    from pipelines.alerts import notify_failure

    notify_failure(context)


@dag(
    dag_id="feature_pipeline",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=True,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["features", "data-quality", "nightly"],
    default_args={
        "owner": "data-platform",
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "retry_policy": ExceptionRetryPolicy(
            rules=[
                RetryRule(
                    exception="pipelines.errors.DataQualityError",
                    action=RetryAction.FAIL,
                    reason="bad data does not fix itself on retry",
                )
            ]
        ),
        "on_failure_callback": [_alert_on_failure],
    },
)
def feature_pipeline() -> None:
    @task
    def check_landed(data_interval_start: datetime | None = None) -> str:
        from pipelines import jobs

        return jobs.check_landed(data_interval_start)

    @task
    def validate(data_interval_start: datetime | None = None) -> dict[str, Any]:
        from pipelines import jobs

        return jobs.validate_partition(data_interval_start)

    @task
    def publish(data_interval_start: datetime | None = None) -> str:
        from pipelines import jobs

        return jobs.publish_partition(data_interval_start)

    @task(outlets=[FEATURES])
    def materialize(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        outlet_events: Any = None,
    ) -> dict[str, Any]:
        from pipelines import jobs

        result = jobs.materialize(data_interval_start, data_interval_end)
        outlet_events[FEATURES].extra = {
            "date": data_interval_start.date().isoformat(),
            "rows": result["entities_written"],
        }
        return result

    check_landed() >> validate() >> publish() >> materialize()


feature_pipeline()
