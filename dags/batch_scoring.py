"""
### batch_scoring

Scores every customer with the MLflow `champion` for one night:

1. **plan**: resolves the champion's version once (every shard uses it, even if
   the alias moves during the run) and splits the night's customers into shards.
2. **score_shard**: one mapped task per shard reads the shard's point-in-time
   features through the model's Feast feature service and scores them.
3. **publish**: joins the shards into `lake/predictions/date=YYYY-MM-DD/` and
   renames it into place; emits the `predictions` asset with date, version, rows.
4. **shadow**: if a `challenger` exists, scores it into `lake/predictions_shadow/`
   and logs its agreement with the champion to MLflow. Never fails the run.

Each `features` event for a night starts exactly one run for that night: the run's
**partition key**, shown beside it in the UI. By hand: trigger with the night as its
partition key (`YYYY-MM-DD`). Re-running a night replaces its partition with the same
bytes; `publish` alone can be cleared and re-run after it succeeded.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

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

FEATURES = Asset(contracts.FEATURES)
PREDICTIONS = Asset(contracts.PREDICTIONS)


def _alert_on_failure(context: Any) -> None:
    from pipelines.io.alerts import notify_failure

    notify_failure(context)


@dag(
    dag_id="batch_scoring",
    schedule=PartitionedAssetTimetable(assets=FEATURES),
    max_active_runs=1,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["scoring", "nightly"],
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "retry_policy": ExceptionRetryPolicy(
            rules=[
                RetryRule(
                    exception=contracts.PERMANENT_ERROR,
                    action=RetryAction.FAIL,
                    reason="no model, no features or no shards: retrying cannot help",
                )
            ]
        ),
        "on_failure_callback": [_alert_on_failure],
    },
)
def batch_scoring() -> None:
    @task
    def plan(partition_key: str | None = None) -> dict[str, Any]:
        from pipelines.jobs import batch_scoring as jobs

        return jobs.plan_scoring(partition_key)

    @task
    def shards(scoring: dict[str, Any]) -> list[dict[str, Any]]:
        from pipelines.jobs import batch_scoring as jobs

        return jobs.shards(scoring)

    @task(map_index_template="{{ task.op_kwargs['shard']['index'] }}")
    def score_shard(scoring: dict[str, Any], shard: dict[str, Any]) -> dict[str, Any]:
        from pipelines.jobs import batch_scoring as jobs

        return jobs.score_shard(scoring, shard)

    @task(outlets=[PREDICTIONS])
    def publish(
        scoring: dict[str, Any], scored: list[dict[str, Any]], outlet_events: Any = None
    ) -> dict[str, Any]:
        from pipelines.jobs import batch_scoring as jobs

        published = jobs.publish_predictions(scoring)
        outlet_events[PREDICTIONS].extra = jobs.predictions_event(published)
        return published

    @task
    def shadow(scoring: dict[str, Any]) -> dict[str, Any]:
        from pipelines.jobs import batch_scoring as jobs

        return jobs.shadow_score(scoring)

    scoring = plan()
    scored = score_shard.partial(scoring=scoring).expand(shard=shards(scoring))
    published = publish(scoring, scored)
    published >> shadow(scoring)


batch_scoring()
