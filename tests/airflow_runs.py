"""A real Airflow for tests, and nights run through it the way a data engineer runs them.

Nightly DAGs take their night as the run's partition key, which `dag.test()` cannot
give: these tests start Airflow's components (`pipelines.orchestrator.LocalAirflow`) on
a throwaway home and drive them only through the REST API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from pipelines import contracts
from pipelines.io.orchestrator import FINISHED, AirflowApi, LocalAirflow, wait_for
from pipelines.settings import Settings

ALL_DAGS = ("feature_pipeline", "batch_scoring", "drift_monitor", "training", "model_rollback")
# A first night far ahead: the schedule creates no run, the test triggers every night itself.
NO_SCHEDULE = {"MLOPS_SCHEDULE__START_DATE": "2100-01-01"}
RUN_TIMEOUT = 900.0  # generous: a busy 2-core machine runs a night slowly


@contextmanager
def real_airflow(
    settings: Settings, mlops_env: Mapping[str, str], paused: Sequence[str] = ()
) -> Iterator[AirflowApi]:
    """Airflow's components on the settings' home, logged in, the DAGs parsed; `paused`
    DAGs paused. On the way out, nothing of it may be left running."""
    airflow = LocalAirflow(settings, mlops_env)
    api = AirflowApi(airflow)
    try:
        airflow.start()
        api.login()
        api.wait_until_parsed(ALL_DAGS)
        for dag_id in paused:
            api.set_paused(dag_id, True)
        yield api
    finally:
        api.close()
        survivors = airflow.stop()
    assert survivors == [], survivors


def by_id(run_id: str) -> Any:
    """A finder of one run among a DAG's runs."""
    return lambda runs: next((r for r in runs if r["dag_run_id"] == run_id), None)


def wait_for_run(api: AirflowApi, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> Any:
    """Wait for one run to end; the run."""
    return api.wait_for_run(dag_id, by_id(run_id), timeout, f"{dag_id} run {run_id}")


def run_night(
    api: AirflowApi, dag_id: str, day: date, timeout: float = RUN_TIMEOUT
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """Trigger a DAG by hand for one night (its partition key) and wait for it to end."""
    run = api.trigger(dag_id, contracts.partition_key(day))
    finished = wait_for_run(api, dag_id, run["dag_run_id"], timeout)
    return finished, api.tasks(dag_id, run["dag_run_id"])


def alerts(settings: Settings, day: date | None = None) -> list[dict[str, Any]]:
    """The alerts raised so far (for one night, when given)."""
    if not settings.alerts_file.exists():
        return []
    raised = [json.loads(line) for line in settings.alerts_file.read_text().splitlines()]
    if day is None:
        return raised
    return [a for a in raised if a["partition_key"] == contracts.partition_key(day)]


def asset_events(api: AirflowApi, asset: str, **query: Any) -> list[dict[str, Any]]:
    """Events of one asset, oldest first."""
    (found,) = [
        a for a in api.call("GET", "/assets", params={"limit": 100})["assets"] if a["name"] == asset
    ]
    params = {"asset_id": found["id"], "limit": 1000, "order_by": "timestamp"} | query
    return api.call("GET", "/assets/events", params=params)["asset_events"]


def clear_and_wait(
    api: AirflowApi, dag_id: str, run_id: str, task_ids: list[str], timeout: float = RUN_TIMEOUT
) -> dict[str, Any]:
    """Clear some tasks of a finished run (those alone), as the UI's *Clear* does, and wait
    until each has run again and the run has ended again."""

    def tries() -> dict[tuple[str, int], dict[str, Any]]:
        return {
            (ti["task_id"], ti["map_index"]): ti
            for ti in api.task_instances(dag_id, run_id)
            if ti["task_id"] in task_ids
        }

    before = {key: ti["try_number"] for key, ti in tries().items()}
    api.clear_tasks(dag_id, run_id, task_ids)

    def ran_again() -> dict[str, Any] | None:
        after = tries().items()
        if not all(
            ti["try_number"] > before.get(key, 0) and ti["state"] in FINISHED for key, ti in after
        ):
            return None
        # The run's own state is settled only once it has ended after the tasks did.
        last_task_end = max(datetime.fromisoformat(ti["end_date"]) for _, ti in after)
        run = api.run(dag_id, run_id)
        ended = run["end_date"] and datetime.fromisoformat(run["end_date"]) >= last_task_end
        return run if ended and run["state"] in FINISHED else None

    return wait_for(f"{task_ids} of {dag_id} {run_id} to run again", ran_again, timeout, 2)
