"""Thirteen nights on a real scheduler, run the way a data engineer runs them.

Airflow's scheduler (LocalExecutor, sized by the settings to the machine), dag-processor,
API server and triggerer run on a throwaway home; the test touches Airflow only through
its REST API and the data only by landing partitions:

- the schedule catches up from its configured first night (ten nights ago) to last night;
- a three-night backfill of the nights before it runs while the schedule runs (with the
  backfill's own default of ten runs at once);
- one night lands late: its landing check waits in the triggerer until it lands;
- one night lands invalid: the gate quarantines it, with exactly one alert;
- one past night is rerun by hand (partition key = the night);
- one task (`batch_scoring.publish` of a scored night) is cleared and re-run alone;
- the last two nights drift: the monitor starts one retraining, then cools down.

Then every valid night has exactly one predictions partition and one drift report, none
is missing, each night was scored as many times as it was asked to be, the aliases
agree with the audit trail, and nothing of Airflow is left running.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipelines import contracts
from pipelines.demo import synthetic
from pipelines.demo.worlds import land_validated_history
from pipelines.io import lake, tracking
from pipelines.io.orchestrator import AirflowApi, wait_for
from pipelines.jobs import training
from pipelines.monitoring import nightly
from pipelines.registry import journal, model_versions
from pipelines.scoring import publishing
from pipelines.settings import load_settings
from tests.airflow_runs import alerts, clear_and_wait, real_airflow

pytestmark = pytest.mark.soak

CUSTOMERS = 500
CHAIN = ("feature_pipeline", "batch_scoring", "drift_monitor", "training")
RETRAIN = contracts.RETRAIN_RUN_PREFIX
SCHEDULED_NIGHTS = 10
BACKFILL_NIGHTS = 3
SETTLE_TIMEOUT = 2400.0
STEP_TIMEOUT = 900.0


def _nights(today: date) -> dict[str, Any]:
    first_scheduled = today - timedelta(days=SCHEDULED_NIGHTS)
    backfill = [first_scheduled - timedelta(days=n) for n in range(BACKFILL_NIGHTS, 0, -1)]
    scheduled = [first_scheduled + timedelta(days=n) for n in range(SCHEDULED_NIGHTS)]
    return {
        "history_end": backfill[0] - timedelta(days=1),
        "backfill": backfill,
        "scheduled": scheduled,
        "invalid": scheduled[3],
        "late": scheduled[5],
        "rerun": scheduled[1],
        "cleared": scheduled[2],
        "drift": scheduled[-2],
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """History up to two weeks ago validated and a champion trained on it; every later
    night landed raw (one broken, one held back), the last two with covariate drift."""
    today = datetime.now(UTC).date()
    nights = _nights(today)
    history_days = 47
    env = {
        "MLOPS_STATE_ROOT": str(tmp_path_factory.mktemp("soak") / "state"),
        "MLOPS_SYNTHETIC__CUSTOMERS": str(CUSTOMERS),
        "MLOPS_SYNTHETIC__START_DATE": str(
            nights["history_end"] - timedelta(days=history_days - 1)
        ),
        "MLOPS_SYNTHETIC__DRIFT_START": str(nights["drift"]),
        "MLOPS_SYNTHETIC__DRIFT_FEATURES": '["usage_minutes", "sessions"]',
        "MLOPS_SYNTHETIC__DRIFT_MAGNITUDE": "1.5",
        "MLOPS_SCORING__SHARD_ROWS": "250",
        "MLOPS_SCHEDULE__START_DATE": str(nights["scheduled"][0]),
        "MLOPS_SCHEDULE__LANDING_POKE_INTERVAL_SECONDS": "3",
        "MLOPS_SCHEDULE__LANDING_TIMEOUT_SECONDS": "1200",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("MLOPS_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        settings = load_settings()
        assert land_validated_history(settings, history_days) == nights["history_end"]
        outcome = training.train_and_gate(nights["history_end"], None, None, None, "first", "soak")
        assert outcome["gate"]["passed"], outcome["gate"]
        # Every later night lands raw, up to today's (in case midnight passes mid-test),
        # but for the late one; the invalid one lands broken.
        night = nights["backfill"][0]
        while night <= today:
            if night != nights["late"]:
                fault = synthetic.Fault.UNKNOWN_CATEGORY if night == nights["invalid"] else None
                synthetic.land_day(settings, night, fault)
            night += timedelta(days=1)
        yield settings, env, nights


def _finished_for(api: AirflowApi, dag_id: str, night: date) -> list[dict[str, Any]]:
    key = contracts.partition_key(night)
    return [r for r in api.runs(dag_id) if r["partition_key"] == key and r["state"] == "success"]


def _land_the_late_night_once_it_is_waited_for(api: AirflowApi, settings, late: date) -> None:
    key = contracts.partition_key(late)

    def waiting() -> bool:
        for run in api.runs("feature_pipeline"):
            if run["partition_key"] == key:
                return (
                    api.tasks("feature_pipeline", run["dag_run_id"]).get("check_landed")
                    == "deferred"
                )
        return False

    wait_for(f"the landing check of {late} to wait for it", waiting, STEP_TIMEOUT, every=2)
    synthetic.land_day(settings, late)


def _settled(api: AirflowApi, nights: dict[str, Any], valid: list[date]) -> bool:
    """Every expected run exists and no run of any DAG is still to do."""
    runs = {dag_id: api.runs(dag_id) for dag_id in CHAIN}
    if any(r["state"] not in ("success", "failed") for rs in runs.values() for r in rs):
        return False
    scored = Counter(r["partition_key"] for r in runs["batch_scoring"])
    checked = Counter(r["partition_key"] for r in runs["drift_monitor"])
    keys = [contracts.partition_key(night) for night in valid]
    trained = [r for r in runs["training"] if r["dag_run_id"].startswith(RETRAIN)]
    return (
        all(scored[key] >= 1 and checked[key] >= 1 for key in keys)
        and scored[contracts.partition_key(nights["rerun"])] == 2
        and checked[contracts.partition_key(nights["cleared"])] == 2
        and len(trained) == 1
    )


def _overlaps(instances: list[dict[str, Any]]) -> list[str]:
    """Runs whose task instance started before an earlier-started one had ended."""
    spans = sorted(
        (datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"]), ti)
        for ti in instances
        if ti["start_date"] and ti["end_date"]
    )
    overlapping, latest_end = [], None
    for start, end, ti in spans:
        if latest_end is not None and start < latest_end:
            overlapping.append(ti["dag_run_id"])
        latest_end = end if latest_end is None else max(latest_end, end)
    return overlapping


def test_every_landed_night_is_scored_exactly_once_under_the_real_scheduler(world):
    settings, env, nights = world
    started = datetime.now(UTC)
    with real_airflow(settings, env) as api:
        # Given the schedule catching up from its first night
        wait_for(
            "the schedule's first run",
            lambda: api.runs("feature_pipeline"),
            STEP_TIMEOUT,
            every=2,
        )
        # When the nights before it are backfilled meanwhile (the backfill's default limit)
        backfill = api.backfill(
            "feature_pipeline", str(nights["backfill"][0]), str(nights["backfill"][-1])
        )
        assert backfill["max_active_runs"] == 10
        # ... the late night lands once its landing check waits for it
        _land_the_late_night_once_it_is_waited_for(api, settings, nights["late"])
        # ... a past night is rerun by hand, once its chain is done
        wait_for(
            f"the drift check of {nights['rerun']}",
            lambda: _finished_for(api, "drift_monitor", nights["rerun"]),
            STEP_TIMEOUT,
            every=3,
        )
        rerun = api.trigger("feature_pipeline", contracts.partition_key(nights["rerun"]))
        # ... and `publish` of a scored night is cleared alone, once the night is done
        cleared = wait_for(
            f"the drift check of {nights['cleared']}",
            lambda: _finished_for(api, "drift_monitor", nights["cleared"]),
            STEP_TIMEOUT,
            every=3,
        )
        assert cleared
        (scored,) = _finished_for(api, "batch_scoring", nights["cleared"])
        published = publishing.partition(
            settings, publishing.PREDICTIONS, nights["cleared"]
        ).read_bytes()
        republished = clear_and_wait(api, "batch_scoring", scored["dag_run_id"], ["publish"])
        assert republished["state"] == "success"

        valid = sorted({*nights["backfill"], *nights["scheduled"]} - {nights["invalid"]})
        wait_for("every night to settle", lambda: _settled(api, nights, valid), SETTLE_TIMEOUT, 5)
        runs = {dag_id: api.runs(dag_id) for dag_id in CHAIN}
        # each night's scoring was started by that night's features, and by nothing else
        started_by = {
            run["partition_key"]: [
                (event["source_dag_id"], event["partition_key"])
                for event in api.upstream_events("batch_scoring", run["dag_run_id"])
            ]
            for run in runs["batch_scoring"]
        }
        feature_tis = {
            task: [
                ti
                for run in runs["feature_pipeline"]
                for ti in api.task_instances("feature_pipeline", run["dag_run_id"])
                if ti["task_id"] == task
            ]
            for task in ("validate", "materialize")
        }
        invalid_run = next(
            r
            for r in runs["feature_pipeline"]
            if r["partition_key"] == contracts.partition_key(nights["invalid"])
        )
        invalid_log = api.task_log("feature_pipeline", invalid_run["dag_run_id"], "validate")
    soak_seconds = (datetime.now(UTC) - started).total_seconds()
    print(f"soak: {len(valid)} valid nights settled in {soak_seconds:.0f} s")

    keys = [contracts.partition_key(night) for night in valid]
    invalid_key = contracts.partition_key(nights["invalid"])

    # Then the schedule ran each night from its first one exactly once, in order
    scheduled = [r for r in runs["feature_pipeline"] if r["run_type"] == "scheduled"]
    scheduled_keys = [r["partition_key"] for r in scheduled]
    expected = [contracts.partition_key(night) for night in nights["scheduled"]]
    assert scheduled_keys[: len(expected)] == expected, scheduled_keys
    assert len(set(scheduled_keys)) == len(scheduled_keys)
    # ... the backfill ran its three nights, and the manual rerun its one
    assert sorted(
        r["partition_key"] for r in runs["feature_pipeline"] if r["run_type"] == "backfill"
    ) == [str(n) for n in nights["backfill"]]
    (manual,) = [r for r in runs["feature_pipeline"] if r["run_type"] == "manual"]
    assert manual["dag_run_id"] == rerun["dag_run_id"] and manual["state"] == "success"
    # ... and the nights' shared state was written by one task at a time throughout
    for task, instances in feature_tis.items():
        assert _overlaps(instances) == [], f"{task} ran twice at once"

    # Every valid night has one predictions partition and one drift report; none is missing
    for night in valid:
        folder = lake.partition_dir(settings.lake_root, publishing.PREDICTIONS, night)
        assert sorted(p.name for p in folder.iterdir()) == [lake.PART_FILE], night
        assert pq.read_metadata(folder / lake.PART_FILE).num_rows == CUSTOMERS
        assert (nightly.report_dir(settings, night) / "report.json").exists(), night
    assert not lake.partition_dir(
        settings.lake_root, publishing.PREDICTIONS, nights["invalid"]
    ).exists()
    assert not nightly.report_dir(settings, nights["invalid"]).exists()
    # ... each night scored and checked once, but as asked: the rerun night twice, and the
    # night whose `publish` was re-run checked twice (its predictions were announced again)
    scored_count = Counter(r["partition_key"] for r in runs["batch_scoring"])
    checked_count = Counter(r["partition_key"] for r in runs["drift_monitor"])
    rerun_key, cleared_key = (contracts.partition_key(nights[k]) for k in ("rerun", "cleared"))
    assert {k: scored_count[k] for k in keys} == {k: 2 if k == rerun_key else 1 for k in keys}
    assert {k: checked_count[k] for k in keys} == {
        k: 2 if k in (rerun_key, cleared_key) else 1 for k in keys
    }
    assert invalid_key not in scored_count and invalid_key not in checked_count
    for key, events in started_by.items():
        assert set(events) == {("feature_pipeline", key)}, (key, events)
    assert all(r["state"] == "success" for r in runs["batch_scoring"] + runs["drift_monitor"])
    # ... the re-run `publish` changed no byte
    assert (
        publishing.partition(settings, publishing.PREDICTIONS, nights["cleared"]).read_bytes()
        == published
    )

    # The invalid night is quarantined, with exactly one alert, and its log says why
    quarantine = lake.partition_dir(
        settings.quarantine_root, settings.project.source.dataset, nights["invalid"]
    )
    assert (quarantine / lake.RESULT_FILE).exists()
    assert [(a["task_id"], a["partition_key"]) for a in alerts(settings)] == [
        ("validate", invalid_key)
    ]
    assert "quarantined" in invalid_log

    # The drifted night started one retraining with its reason; the next one cooled down
    drift_key = contracts.partition_key(nights["drift"])
    (training,) = [r for r in runs["training"] if r["dag_run_id"].startswith(RETRAIN)]
    assert training["dag_run_id"] == contracts.retrain_run_id(drift_key)
    assert training["state"] == "success"
    client = tracking.mlflow_client(settings)
    experiment = client.get_experiment_by_name(settings.project.model.name)
    (mlflow_run,) = client.search_runs(
        [experiment.experiment_id], f"tags.`airflow.run_id` = '{training['dag_run_id']}'"
    )
    assert f"drift on {drift_key}" in mlflow_run.data.tags["reason"]

    # The aliases are what the audit trail says they are
    final: dict[str, str | None] = {}
    for move in journal.history(settings):
        final[move.alias] = move.to_version
    for alias in (
        contracts.CHAMPION,
        contracts.PREVIOUS_CHAMPION,
        contracts.CHALLENGER,
    ):
        assert model_versions.alias_version(settings, alias) == final.get(alias), alias
    assert final[contracts.CHAMPION] in ("1", "2")
