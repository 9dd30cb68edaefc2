"""
### feature_pipeline

One run per night; the run's **partition key** is the night (`YYYY-MM-DD`, UTC):

1. **check_landed**: waits for the night's raw partition; while it waits,
   the triggerer looks for it and no worker is held. Past
   `MLOPS_SCHEDULE__LANDING_TIMEOUT_SECONDS` the run fails and the alert names the
   missing path.
2. **validate**: the Great Expectations checkpoint runs on it. A failing or
   unreadable partition is quarantined with its validation result, the task fails
   at once (no retries: bad bytes stay bad) and names every failed expectation.
3. **publish**: the validated partition is renamed into the validated zone, the
   only place Feast reads.
4. **build_features**: for an events source, the night's feature rows from the
   previous night's state and the night's events (a snapshot source is its own).
5. **build_labels**: for labels derived from events, the labels the night's events
   now tell (landed labels need nothing).
6. **materialize**: the night (plus a small overlap for late rows) is written into
   the Feast online store; emits the `features` asset for the night, which starts
   exactly one `batch_scoring` run for it.

The schedule runs at midnight UTC for the night before, from
`MLOPS_SCHEDULE__START_DATE` (empty: the latest night when first scheduled), and
catches up after downtime. Older nights: `airflow backfill create`. Rerun a night:
trigger with its partition key. One run at a time; `validate`, `build_features` and
`materialize` run one at a time across backfills too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.sdk import (
    Asset,
    CronPartitionTimetable,
    ExceptionRetryPolicy,
    RetryAction,
    RetryRule,
    dag,
    task,
)

from pipelines import contracts

FEATURES = Asset(contracts.FEATURES)
SCHEDULE = contracts.schedule_settings()


def _alert_on_failure(context: Any) -> None:
    from pipelines.io.alerts import notify_failure

    notify_failure(context)


def raw_partition(partition_key: str | None) -> str:
    """Template macro: where the night's raw partition lands, within the lake."""
    from pipelines.jobs import feature_pipeline as jobs

    return jobs.raw_partition_in_lake(partition_key)


def _alert_on_landing_failure(context: Any) -> None:
    from pipelines.io.alerts import notify_failure
    from pipelines.jobs import feature_pipeline as jobs

    detail = jobs.landing_alert(context.get("partition_key"), context.get("exception"))
    notify_failure(context, detail)


@dag(
    dag_id="feature_pipeline",
    schedule=CronPartitionTimetable(
        contracts.NIGHTLY_CRON,
        timezone=contracts.SCHEDULE_TIMEZONE,
        run_offset=-1,  # the run at midnight processes the night that just ended
        key_format=contracts.PARTITION_KEY_FORMAT,
        run_immediately=True,
    ),
    catchup=True,
    max_active_runs=1,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["features", "data-quality", "nightly"],
    user_defined_macros={"raw_partition": raw_partition},
    default_args={
        # Without a configured start the timetable's first run is the latest night
        # (`run_immediately`), and catch-up holds from there on. Airflow's DAG check only
        # accepts catch-up without a start date when `start_date` is among default_args.
        "start_date": contracts.first_scheduled_run(SCHEDULE),
        "owner": "data-platform",
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "retry_policy": ExceptionRetryPolicy(
            rules=[
                RetryRule(
                    exception=contracts.PERMANENT_ERROR,
                    action=RetryAction.FAIL,
                    reason="bad data or settings do not fix themselves on retry",
                )
            ]
        ),
        "on_failure_callback": [_alert_on_failure],
    },
)
def feature_pipeline() -> None:
    # Deferred to the triggerer rather than rescheduled: a waiting night holds no worker,
    # and Airflow 3.3 can fail a rescheduled sensor whose next look starts before the
    # scheduler heard the last one end (apache/airflow#71172).
    check_landed = FileSensor(
        task_id="check_landed",
        fs_conn_id="lake",  # the lake's root (`Settings.airflow_env`)
        filepath="{{ raw_partition(partition_key) }}",
        deferrable=True,
        poke_interval=SCHEDULE.landing_poke_interval_seconds,
        timeout=SCHEDULE.landing_timeout_seconds,
        on_failure_callback=[_alert_on_landing_failure],
    )

    # Both touch state shared by every night (Data Docs; the online store and the Feast
    # registry), so they run one at a time whatever runs at once (a backfill's own limit).
    @task(max_active_tis_per_dag=1)
    def validate(partition_key: str | None = None) -> dict[str, Any]:
        from pipelines.jobs import feature_pipeline as jobs

        return jobs.validate_partition(partition_key)

    @task
    def publish(partition_key: str | None = None) -> str:
        from pipelines.jobs import feature_pipeline as jobs

        return jobs.publish_partition(partition_key)

    # Each night's state is the previous night's plus its events: one at a time.
    @task(max_active_tis_per_dag=1)
    def build_features(partition_key: str | None = None) -> dict[str, Any]:
        from pipelines.jobs import feature_pipeline as jobs

        return jobs.build_features(partition_key)

    @task
    def build_labels(partition_key: str | None = None) -> dict[str, Any]:
        from pipelines.jobs import feature_pipeline as jobs

        return jobs.build_labels(partition_key)

    @task(outlets=[FEATURES], max_active_tis_per_dag=1)
    def materialize(partition_key: str | None = None, outlet_events: Any = None) -> dict[str, Any]:
        from pipelines.jobs import feature_pipeline as jobs

        result = jobs.materialize(partition_key)
        outlet_events[FEATURES].extra = jobs.features_event(partition_key, result)
        return result

    built = check_landed >> validate() >> publish() >> build_features()
    built >> [build_labels(), materialize()]


feature_pipeline()
