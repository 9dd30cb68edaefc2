"""`feature_pipeline` on a real scheduler: good nights reach the online store, bad nights
stop at the gate, a late night is waited for, a night that never lands is named.

One Airflow serves the module; each test uses nights of its own, triggered by hand with
the night as the partition key (the schedule is off: its first night is far ahead).
`batch_scoring` and `drift_monitor` are paused: there is no model to score with.
"""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta

import pandas as pd
import pytest

from pipelines import contracts
from pipelines.demo import synthetic
from pipelines.io import feast_store, lake
from pipelines.io.orchestrator import wait_for
from pipelines.settings import load_settings
from tests.airflow_runs import (
    NO_SCHEDULE,
    alerts,
    asset_events,
    clear_and_wait,
    real_airflow,
    run_night,
    wait_for_run,
)

pytestmark = pytest.mark.e2e

FIRST_DAY = date(2026, 1, 1)
# One fault of each kind the gate tells apart: an unreadable file, a broken schema, bad
# values. Every fault is checked against the gate itself in tests/unit/ingest/test_validation.py.
FAULTS = [synthetic.Fault.CORRUPT_FILE, synthetic.Fault.MISSING_COLUMN, synthetic.Fault.NULLS]
FAULT_DAYS = {fault: FIRST_DAY + timedelta(days=10 + n) for n, fault in enumerate(FAULTS)}
LATE_DAY = FIRST_DAY + timedelta(days=30)
NEVER_DAY = FIRST_DAY + timedelta(days=31)
CLEARED_DAY = FIRST_DAY + timedelta(days=32)
LANDING = {
    "MLOPS_SCHEDULE__LANDING_POKE_INTERVAL_SECONDS": "2",
    "MLOPS_SCHEDULE__LANDING_TIMEOUT_SECONDS": "45",
}


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """One Airflow on a world of 300 customers; the schedule off, scoring paused."""
    env = {
        "MLOPS_STATE_ROOT": str(tmp_path_factory.mktemp("feature-pipeline") / "state"),
        "MLOPS_SYNTHETIC__CUSTOMERS": "300",
        **NO_SCHEDULE,
        **LANDING,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = load_settings()
        with real_airflow(settings, env, paused=("batch_scoring", "drift_monitor")) as api:
            yield settings, api


def _online_rows(settings) -> list[tuple]:
    path = settings.feast_root / "online_store.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as connection:
        table = f"{settings.feast_project}_{settings.project.source.feature_view}"
        return sorted(connection.execute(f'select * from "{table}"').fetchall())


def _validated_zone(settings) -> dict[str, bytes]:
    root = settings.validated_root
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_three_nights_leave_each_customers_latest_features_online(airflow):
    settings, api = airflow
    # Given three consecutive days of landed activity
    days = [FIRST_DAY + timedelta(days=n) for n in range(3)]
    for day in days:
        synthetic.land_day(settings, day)

    # When each night runs through Airflow, keyed by its night
    runs = [run_night(api, "feature_pipeline", day) for day in days]

    # Then every run succeeds and announces the features of its night, as its partition
    assert [run["state"] for run, _ in runs] == ["success"] * 3
    assert [run["partition_key"] for run, _ in runs] == [str(day) for day in days]
    events = asset_events(api, contracts.FEATURES, source_dag_id="feature_pipeline")
    assert [(e["partition_key"], e["extra"]) for e in events] == [
        (str(day), {"date": str(day), "rows": settings.synthetic.customers}) for day in days
    ]
    # ... and the online store holds every customer's values from the last day
    expected = synthetic.activity(settings.synthetic, days[-1]).set_index("customer_id")
    store = feast_store.feature_store(settings)
    online = (
        store.get_online_features(
            features=store.get_feature_service(settings.project.model.feature_service),
            entity_rows=[{"customer_id": int(i)} for i in expected.index],
        )
        .to_df()
        .set_index("customer_id")
    )
    columns = [c for c in online.columns if c in expected.columns]
    assert len(columns) == len(synthetic.FEATURES)
    pd.testing.assert_frame_equal(
        online[columns].sort_index(), expected[columns].sort_index(), check_dtype=False
    )
    assert alerts(settings) == []
    # ... with each task's log where the UI reads it
    last_run = runs[-1][0]["dag_run_id"]
    assert "materialized" in api.task_log("feature_pipeline", last_run, "materialize")


def test_rerunning_a_night_is_harmless(airflow):
    settings, api = airflow
    day = FIRST_DAY + timedelta(days=2)  # the last night of the test above
    before = (_online_rows(settings), _validated_zone(settings))

    run, _ = run_night(api, "feature_pipeline", day)

    assert run["state"] == "success"
    assert (_online_rows(settings), _validated_zone(settings)) == before


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.value)
def test_a_faulty_partition_stops_at_the_gate_and_changes_nothing(airflow, fault):
    settings, api = airflow
    online_before, validated_before = _online_rows(settings), _validated_zone(settings)

    # When a night lands with a fault
    bad_day = FAULT_DAYS[fault]
    synthetic.land_day(settings, bad_day, fault)
    run, tasks = run_night(api, "feature_pipeline", bad_day)

    # Then the run fails at validation, once, and nothing downstream ran
    assert run["state"] == "failed"
    assert tasks["check_landed"] == "success"
    assert tasks["validate"] == "failed"
    assert tasks["publish"] == tasks["materialize"] == "upstream_failed"
    # ... the partition sits in quarantine with its result beside it
    quarantine = lake.partition_dir(
        settings.quarantine_root, settings.project.source.dataset, bad_day
    )
    assert (quarantine / lake.RESULT_FILE).exists() and (quarantine / lake.PART_FILE).exists()
    assert not lake.partition_file(
        settings.raw_root, settings.project.source.dataset, bad_day
    ).exists()
    # ... the online store and the validated zone are unchanged
    assert _online_rows(settings) == online_before
    assert _validated_zone(settings) == validated_before
    # ... and exactly one alert names the failure (bad bytes are never retried)
    raised = alerts(settings, bad_day)
    assert [(a["task_id"], a["try_number"]) for a in raised] == [("validate", 1)]
    assert "quarantined" in raised[0]["error"]


def test_clearing_validate_of_a_quarantined_night_says_to_land_it_again(airflow):
    settings, api = airflow
    bad_day = FAULT_DAYS[synthetic.Fault.NULLS]
    (run,) = [r for r in api.runs("feature_pipeline") if r["partition_key"] == str(bad_day)]

    # When an engineer clears `validate` alone (the bad file is in quarantine now)
    cleared = clear_and_wait(api, "feature_pipeline", run["dag_run_id"], ["validate"])

    # Then it fails at once, saying what to do
    assert cleared["state"] == "failed"
    raised = alerts(settings, bad_day)
    assert len(raised) == 2 and raised[-1]["try_number"] == 2
    assert "land a corrected partition" in raised[-1]["error"]


def test_a_late_night_is_waited_for_and_runs_when_it_lands(airflow):
    settings, api = airflow
    # Given a night triggered before its partition landed
    run = api.trigger("feature_pipeline", contracts.partition_key(LATE_DAY))

    # When the landing check has looked once and handed the wait to the triggerer
    def waiting() -> bool:
        states = api.tasks("feature_pipeline", run["dag_run_id"])
        return states.get("check_landed") == "deferred"

    wait_for("the landing check to wait for the night", waiting, 300)
    synthetic.land_day(settings, LATE_DAY)

    # Then the night runs through once the partition is there
    finished = wait_for_run(api, "feature_pipeline", run["dag_run_id"])
    assert finished["state"] == "success"
    assert alerts(settings, LATE_DAY) == []


def test_a_night_that_never_lands_fails_naming_the_missing_path(airflow):
    settings, api = airflow

    run, tasks = run_night(api, "feature_pipeline", NEVER_DAY)

    assert run["state"] == "failed" and tasks["check_landed"] == "failed"
    (raised,) = alerts(settings, NEVER_DAY)
    assert "has not landed within 0:00:45" in raised["error"]
    assert f"date={NEVER_DAY}" in raised["error"]


def test_publish_cleared_alone_after_success_succeeds_and_changes_nothing(airflow):
    settings, api = airflow
    synthetic.land_day(settings, CLEARED_DAY)
    run, _ = run_night(api, "feature_pipeline", CLEARED_DAY)
    assert run["state"] == "success"
    before = _validated_zone(settings)

    # When `publish` alone is cleared (its staged file was renamed away the first time)
    again = clear_and_wait(api, "feature_pipeline", run["dag_run_id"], ["publish"])

    # Then it succeeds at once: the night is already published
    assert again["state"] == "success"
    assert api.tasks("feature_pipeline", run["dag_run_id"])["publish"] == "success"
    assert _validated_zone(settings) == before
    assert alerts(settings, CLEARED_DAY) == []
