"""
### drift_monitor

Checks each scored night against the reference profile stored with the model
that scored it (the job reads only today's data and that profile):

- numeric features: PSI on the reference's quantile bins, the KS statistic of the
  binned CDFs, and the Wasserstein distance in reference standard deviations;
  categorical features: Jensen-Shannon distance, unseen categories;
- predictions: PSI of today's scores against the holdout's;
- realized performance of earlier predictions whose labels arrived today, per model
  version that made them, against that version's own holdout.

Each `predictions` event for a night starts exactly one run for that night (its
**partition key**). Every night the metrics go to MLflow (`<model>-drift`, one step per
night) and a JSON and HTML report to `.state/reports/drift/date=YYYY-MM-DD/`. Past the
alert level (too many drifted features, prediction drift, or a performance drop of the
version that scored the night), it
emits a `retrain_request` asset event with the reason, the drifted features and the
night, and starts a `training` run with that reason: at most one per cooldown window,
and none while a `training` run is active.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import (
    Asset,
    ExceptionRetryPolicy,
    PartitionedAssetTimetable,
    RetryAction,
    RetryRule,
    dag,
    task,
)

from pipelines import contracts

PREDICTIONS = Asset(contracts.PREDICTIONS)
RETRAIN_REQUEST = Asset(contracts.RETRAIN_REQUEST)


def _alert_on_failure(context: Any) -> None:
    from pipelines.io.alerts import notify_failure

    notify_failure(context)


@dag(
    dag_id="drift_monitor",
    schedule=PartitionedAssetTimetable(assets=PREDICTIONS),
    max_active_runs=1,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["monitoring", "drift", "nightly"],
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_policy": ExceptionRetryPolicy(
            rules=[
                RetryRule(
                    exception=contracts.PERMANENT_ERROR,
                    action=RetryAction.FAIL,
                    reason="missing predictions, features or profile: retrying cannot help",
                )
            ]
        ),
        "on_failure_callback": [_alert_on_failure],
    },
)
def drift_monitor() -> None:
    @task
    def check(partition_key: str | None = None) -> dict[str, Any]:
        from pipelines.jobs import drift_monitor as jobs

        return jobs.check_drift(partition_key)

    @task.short_circuit(inlets=[RETRAIN_REQUEST])
    def needs_retraining(
        report: dict[str, Any], inlet_events: Any = None, ti: Any = None
    ) -> dict[str, Any] | None:
        from pipelines.jobs import drift_monitor as jobs

        active = ti.get_dr_count("training", states=["queued", "running"])
        return jobs.retrain_request(report, inlet_events[RETRAIN_REQUEST], active)

    @task(outlets=[RETRAIN_REQUEST])
    def request_retraining(request: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
        """Emits the request; gives the conf of the `training` run it starts."""
        from pipelines.jobs import drift_monitor as jobs

        outlet_events[RETRAIN_REQUEST].extra = request
        return jobs.training_conf(request)

    # A partitioned event cannot trigger the (unpartitioned) weekly `training` DAG, so the
    # request starts its run directly; one run id per night, so a re-run starts no second.
    training_conf = request_retraining(needs_retraining(check()))
    TriggerDagRunOperator(
        task_id="start_training",
        trigger_dag_id="training",
        trigger_run_id=contracts.RETRAIN_RUN_PREFIX + "{{ partition_key }}",
        conf=training_conf,
        logical_date=None,
        skip_when_already_exists=True,
    )


drift_monitor()
