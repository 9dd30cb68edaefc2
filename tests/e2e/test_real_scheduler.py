"""The DAGs chain through their assets in a real Airflow, not only under `dag.test()`.

Airflow's scheduler, dag-processor, API server and triggerer run as subprocesses on a
throwaway home (LocalExecutor, SQLite); the test drives them only through the REST API,
as a person would: log in, unpause, trigger one night of `feature_pipeline`, then watch
`features` → `batch_scoring` → `predictions` → `drift_monitor` → `retrain_request` →
`training` happen on their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipelines import jobs, lake, score, synthetic, tracking
from pipelines.settings import load_settings
from tests.airflow_processes import Airflow, Api, wait_for
from tests.worlds import land_validated_history

pytestmark = pytest.mark.e2e

LAST_HISTORY_DAY = date(2026, 2, 14)
DRIFT_DAY = date(2026, 2, 15)
HISTORY_DAYS = 45
DRIFT_ENV = {
    "MLOPS_SYNTHETIC__DRIFT_START": DRIFT_DAY.isoformat(),
    "MLOPS_SYNTHETIC__DRIFT_FEATURES": '["usage_minutes", "sessions"]',
    "MLOPS_SYNTHETIC__DRIFT_MAGNITUDE": "1.5",
}
CHAIN = ("feature_pipeline", "batch_scoring", "drift_monitor", "training")
CHAIN_TIMEOUT = 600.0
# Paused until their schedules are up to date (see below), then unpaused through the API.
PAUSED_AT_CREATION = {"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"}


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def drifted_world(tmp_path_factory):
    """45 validated days of 500 customers with their labels, a promoted champion, the
    Feast repo applied, and the next day's raw partition landed with covariate drift."""
    state_root = tmp_path_factory.mktemp("real-scheduler") / "state"
    mlops_env = {"MLOPS_STATE_ROOT": str(state_root), "MLOPS_SYNTHETIC__CUSTOMERS": "500"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in mlops_env.items():
            patch.setenv(name, value)
        settings = load_settings()
        assert land_validated_history(settings, HISTORY_DAYS) == LAST_HISTORY_DAY
        # Builds the training set through Feast (applying the repo), trains, gates, promotes.
        outcome = jobs.train_and_gate(LAST_HISTORY_DAY, None, None, None, "champion", "test")
        assert outcome["gate"]["passed"], outcome["gate"]

        for name, value in DRIFT_ENV.items():
            patch.setenv(name, value)
        drifted = load_settings()
        synthetic.land_day(drifted, DRIFT_DAY)
        raw = pq.read_table(
            lake.partition_file(drifted.raw_root, drifted.dataset.raw_dataset, DRIFT_DAY)
        ).to_pandas()
        quiet = synthetic.activity(settings.synthetic, DRIFT_DAY)
        # The drift is real, and still inside the gate's ranges (a day has 1440 minutes).
        assert raw["usage_minutes"].mean() > 1.5 * quiet["usage_minutes"].mean()
        assert raw["sessions"].mean() > 1.5 * quiet["sessions"].mean()
        assert raw["usage_minutes"].between(0, 1440).all()
        assert raw["sessions"].between(0, 500).all()
        yield drifted, mlops_env | DRIFT_ENV


@pytest.fixture
def running_airflow(drifted_world) -> Iterator[tuple[Airflow, Api]]:
    settings, mlops_env = drifted_world
    airflow = Airflow(settings, mlops_env, overrides=PAUSED_AT_CREATION)
    api = Api(airflow)
    try:
        airflow.start()
        api.login()
        yield airflow, api
    finally:
        api.client.close()
        airflow.stop()


def _last_scheduled_runs(now: datetime) -> dict[str, datetime]:
    """Logical date of the latest scheduled run each time-scheduled DAG has due by `now`."""
    last_night = _midnight(now.date()) - timedelta(days=1)  # feature_pipeline: daily interval
    sunday = _midnight(now.date()) + timedelta(hours=3)  # training: Sundays at 03:00
    while sunday.weekday() != 6 or sunday > now:
        sunday -= timedelta(days=1)
    return {"feature_pipeline": last_night, "training": sunday}


def _bring_schedules_up_to_date(api: Api) -> None:
    """Mark the latest scheduled run of each time-scheduled DAG as done before unpausing.

    This Airflow is new, so unpausing would start scheduled runs that have nothing to do
    with the night under test: `feature_pipeline` catches up from 2026-01-01 (a run per
    night, one at a time, ahead of the manual run), and `training` runs last Sunday's
    missed weekly run at once (an active training run rightly suppresses the drift
    monitor's retrain request). A deployed pipeline has had those runs already: record
    each with a one-run backfill, cancelled while the DAG is still paused so it never
    starts, and wait for the dag-processor to schedule the next run after now.
    """
    now = datetime.now(UTC)
    for dag_id, logical_date in _last_scheduled_runs(now).items():
        backfill = api.call(
            "POST",
            "/backfills",
            json={
                "dag_id": dag_id,
                "from_date": _iso(logical_date),
                "to_date": _iso(logical_date),
                "max_active_runs": 1,
            },
        )
        api.call("PUT", f"/backfills/{backfill['id']}/cancel")
        runs = api.runs(dag_id)
        assert [(r["run_type"], r["state"]) for r in runs] == [("backfill", "failed")], runs

    def next_runs_after_now() -> bool:
        dags = [api.call("GET", f"/dags/{dag_id}") for dag_id in _last_scheduled_runs(now)]
        return all(
            d["next_dagrun_run_after"]
            and datetime.fromisoformat(d["next_dagrun_run_after"]) > datetime.now(UTC)
            for d in dags
        )

    wait_for("the next scheduled runs to move past now", next_runs_after_now, 120)


def _watch_chain(airflow: Airflow, api: Api, feature_run: str) -> dict[str, dict[str, Any]]:
    """Follow the chain until `training` ends; fail fast on a failed run, or on timeout."""
    deadline = time.monotonic() + CHAIN_TIMEOUT
    seen: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        airflow.check_alive()
        seen = {dag_id: api.runs(dag_id) for dag_id in CHAIN}
        chosen = {
            "feature_pipeline": [
                r for r in seen["feature_pipeline"] if r["dag_run_id"] == feature_run
            ]
        }
        for dag_id in CHAIN[1:]:
            chosen[dag_id] = [r for r in seen[dag_id] if r["run_type"] == "asset_triggered"]
        failed = [r for runs in chosen.values() for r in runs if r["state"] == "failed"]
        if failed:
            pytest.fail(_describe(api, airflow, seen, failed))
        for run in chosen["drift_monitor"]:
            tasks = api.tasks("drift_monitor", run["dag_run_id"])
            if run["state"] == "success" and tasks.get("request_retraining") != "success":
                pytest.fail(f"no retrain request\n{_describe(api, airflow, seen, [run])}")
        if all(runs and runs[0]["state"] == "success" for runs in chosen.values()):
            return {dag_id: runs[0] for dag_id, runs in chosen.items()}
        time.sleep(3)
    pytest.fail(f"timed out after {CHAIN_TIMEOUT:.0f}s\n{_describe(api, airflow, seen, [])}")


def _describe(
    api: Api, airflow: Airflow, seen: dict[str, list[dict[str, Any]]], failed: list[dict]
) -> str:
    lines = []
    for dag_id, runs in seen.items():
        for run in runs:
            tasks = api.tasks(dag_id, run["dag_run_id"])
            lines.append(f"{dag_id} {run['dag_run_id']} {run['run_type']} {run['state']}: {tasks}")
        if not runs:
            lines.append(f"{dag_id}: no runs")
    for run in failed:
        task_logs = (
            airflow.home / "logs" / f"dag_id={run['dag_id']}" / f"run_id={run['dag_run_id']}"
        )
        for log in sorted(task_logs.glob("task_id=*/**/*.log")):
            text = log.read_text(errors="replace").splitlines()[-25:]
            lines += [f"--- {log.relative_to(airflow.home)}", *text]
    lines += ["--- scheduler", airflow.log_tail("scheduler", 20)]
    return "\n".join(lines)


def test_the_dags_chain_through_assets_in_a_real_scheduler(drifted_world, running_airflow):
    settings, _ = drifted_world
    airflow, api = running_airflow

    # Given the project's DAGs parsed by the dag-processor, without import errors
    api.wait_until_parsed(CHAIN)
    _bring_schedules_up_to_date(api)
    for dag_id in CHAIN:
        assert api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})["is_paused"] is False

    # When the drifted night is triggered by hand: a run at T processes the day before T
    triggered = api.call(
        "POST",
        "/dags/feature_pipeline/dagRuns",
        json={"logical_date": _iso(_midnight(DRIFT_DAY + timedelta(days=1))), "conf": {}},
    )
    assert triggered["data_interval_start"].startswith(DRIFT_DAY.isoformat()), triggered

    # Then the assets carry it all the way to a retraining, with no other trigger
    runs = _watch_chain(airflow, api, triggered["dag_run_id"])

    features = api.upstream_events("batch_scoring", runs["batch_scoring"]["dag_run_id"])
    assert [(e["source_dag_id"], e["source_run_id"]) for e in features] == [
        ("feature_pipeline", triggered["dag_run_id"])
    ]
    assert features[0]["extra"]["date"] == DRIFT_DAY.isoformat()
    predictions = api.upstream_events("drift_monitor", runs["drift_monitor"]["dag_run_id"])
    assert [(e["source_dag_id"], e["extra"]["date"]) for e in predictions] == [
        ("batch_scoring", DRIFT_DAY.isoformat())
    ]
    monitor_tasks = api.tasks("drift_monitor", runs["drift_monitor"]["dag_run_id"])
    assert monitor_tasks["request_retraining"] == "success", monitor_tasks
    (request,) = api.upstream_events("training", runs["training"]["dag_run_id"])
    assert request["source_dag_id"] == "drift_monitor"
    assert request["source_run_id"] == runs["drift_monitor"]["dag_run_id"]
    assert {"usage_minutes", "sessions"} <= set(request["extra"]["drifted_features"])

    scored = pq.read_table(score.partition(settings, score.PREDICTIONS, DRIFT_DAY)).to_pandas()
    assert len(scored) == settings.synthetic.customers
    assert set(scored["model_version"]) == {"1"}

    client = tracking.mlflow_client(settings)
    experiment = client.get_experiment_by_name(settings.training.model_name)
    training_run = runs["training"]["dag_run_id"]
    (mlflow_run,) = client.search_runs(
        [experiment.experiment_id], f"tags.`airflow.run_id` = '{training_run}'"
    )
    assert f"drift on {DRIFT_DAY.isoformat()}" in mlflow_run.data.tags["reason"]

    # And nothing of this Airflow outlives it
    assert airflow.stop() == []
