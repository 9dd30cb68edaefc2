"""
### drift_monitor

Checks each scored night against the reference profile stored with the model
that scored it (the job reads only today's data and that profile):

- numeric features: PSI on the reference's quantile bins, the KS statistic of the
  binned CDFs, and the Wasserstein distance in reference standard deviations;
  categorical features: Jensen-Shannon distance, unseen categories;
- predictions: PSI of today's scores against the holdout's;
- realized performance of earlier predictions whose labels arrived today.

Every night the metrics go to MLflow (`churn-drift`, one step per night) and a JSON
and HTML report to `.state/reports/drift/date=YYYY-MM-DD/`. Past the alert level
(too many drifted features, prediction drift, or a performance drop), it emits a
`retrain_request` asset event with the reason, the drifted features and the date:
at most one per cooldown window, and none while a `training` run is active.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, task

PREDICTIONS = Asset("predictions")
RETRAIN_REQUEST = Asset("retrain_request")


def _alert_on_failure(context: Any) -> None:
    from pipelines.alerts import notify_failure

    notify_failure(context)


@dag(
    dag_id="drift_monitor",
    schedule=[PREDICTIONS],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["monitoring", "drift", "nightly"],
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Night to check",
            description="YYYY-MM-DD; empty: the date of the triggering `predictions` event.",
        ),
    },
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "on_failure_callback": [_alert_on_failure],
    },
)
def drift_monitor() -> None:
    @task
    def check(
        params: dict[str, Any] | None = None,
        triggering_asset_events: Any = None,
        dag_run: Any = None,
    ) -> dict[str, Any]:
        from pipelines import jobs

        return jobs.check_drift(params["date"], triggering_asset_events, dag_run.run_after)

    @task.short_circuit(inlets=[RETRAIN_REQUEST])
    def needs_retraining(
        report: dict[str, Any], inlet_events: Any = None, ti: Any = None
    ) -> dict[str, Any] | None:
        from pipelines import jobs

        previous = list(inlet_events[RETRAIN_REQUEST])
        last_day = previous[-1].extra.get("date") if previous else None
        active = ti.get_dr_count("training", states=["queued", "running"])
        return jobs.retrain_request(report, last_day, active)

    @task(outlets=[RETRAIN_REQUEST])
    def request_retraining(request: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
        outlet_events[RETRAIN_REQUEST].extra = request
        return request

    request_retraining(needs_retraining(check()))


drift_monitor()
