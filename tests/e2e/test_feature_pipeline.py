"""`feature_pipeline` end to end: good days reach the online store, bad days stop at the gate."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from pipelines import features, lake, orchestrator, synthetic

pytestmark = pytest.mark.e2e

FIRST_DAY = date(2026, 1, 1)


def _run(dag, day: date) -> orchestrator.DagRunOutcome:
    """A manual run at midnight after `day` processes `day`."""
    return orchestrator.run_dag(
        dag, datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
    )


def _online_rows(settings) -> list[tuple]:
    path = settings.feast_root / "online_store.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as connection:
        table = f"{settings.feast.project}_{settings.dataset.feature_view}"
        return sorted(connection.execute(f'select * from "{table}"').fetchall())


def _validated_zone(settings) -> dict[str, bytes]:
    root = settings.validated_root
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def _asset_events(dag_id: str, run_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter(
            AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id
        )
        return [event.extra for event in events]


def test_three_nights_leave_each_customers_latest_features_online(settings, feature_dag):
    # Given three consecutive days of landed activity
    days = [FIRST_DAY + timedelta(days=n) for n in range(3)]
    for day in days:
        synthetic.land_day(settings, day)

    # When feature_pipeline runs each night through Airflow
    outcomes = [_run(feature_dag, day) for day in days]

    # Then every run succeeds, announces its features, and the online store
    # holds every customer's values from the last day
    assert [o.state for o in outcomes] == ["success"] * 3
    assert _asset_events("feature_pipeline", outcomes[-1].run_id) == [
        {"date": days[-1].isoformat(), "rows": settings.synthetic.customers}
    ]
    expected = synthetic.activity(settings.synthetic, days[-1]).set_index("customer_id")
    store = features.feature_store(settings)
    online = (
        store.get_online_features(
            features=store.get_feature_service(settings.dataset.feature_service),
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
    assert not settings.alerts_file.exists()


def test_rerunning_a_night_is_harmless(settings, feature_dag):
    synthetic.land_day(settings, FIRST_DAY)
    assert _run(feature_dag, FIRST_DAY).succeeded
    before = (_online_rows(settings), _validated_zone(settings))

    assert _run(feature_dag, FIRST_DAY).succeeded

    assert (_online_rows(settings), _validated_zone(settings)) == before


FILE_AND_CONTENT_FAULTS = [
    fault
    for fault in synthetic.Fault
    if fault not in (synthetic.Fault.NOT_LANDED, synthetic.Fault.EXTRA_COLUMN)
]


@pytest.mark.parametrize("fault", FILE_AND_CONTENT_FAULTS, ids=lambda fault: fault.value)
def test_a_faulty_partition_stops_at_the_gate_and_changes_nothing(settings, feature_dag, fault):
    # Given a good first night already served
    synthetic.land_day(settings, FIRST_DAY)
    assert _run(feature_dag, FIRST_DAY).succeeded
    online_before, validated_before = _online_rows(settings), _validated_zone(settings)

    # When the next day lands with a fault
    bad_day = FIRST_DAY + timedelta(days=1)
    synthetic.land_day(settings, bad_day, fault)
    outcome = _run(feature_dag, bad_day)

    # Then the run fails at validation, once, and nothing downstream ran
    assert outcome.state == "failed"
    assert outcome.tasks["check_landed"] == "success"
    assert outcome.tasks["validate"] == "failed"
    assert outcome.tasks["publish"] == outcome.tasks["materialize"] == "upstream_failed"
    # ... the partition sits in quarantine with its result beside it
    quarantine = lake.partition_dir(settings.quarantine_root, settings.dataset.raw_dataset, bad_day)
    result = json.loads((quarantine / lake.RESULT_FILE).read_text())
    assert result["success"] is False
    assert (quarantine / lake.PART_FILE).exists()
    assert not lake.partition_file(
        settings.raw_root, settings.dataset.raw_dataset, bad_day
    ).exists()
    # ... the online store and the validated zone are unchanged
    assert _online_rows(settings) == online_before
    assert _validated_zone(settings) == validated_before
    # ... and an alert names the failure
    alerts = [json.loads(line) for line in settings.alerts_file.read_text().splitlines()]
    assert [(a["task_id"], a["try_number"]) for a in alerts] == [("validate", 1)]
    assert "quarantined" in alerts[0]["error"]


def test_a_partition_that_never_lands_is_retried_then_fails_naming_it(settings, feature_dag):
    # Given no partition for the day, and the retry delay shortened for the test
    check = feature_dag.get_task("check_landed")
    original = (check.retry_delay, check.retry_exponential_backoff)
    check.retry_delay, check.retry_exponential_backoff = timedelta(seconds=0), 0
    try:
        # When the night runs
        outcome = _run(feature_dag, FIRST_DAY)
    finally:
        check.retry_delay, check.retry_exponential_backoff = original

    # Then the landing check was retried to its limit, then failed with the missing path
    assert outcome.state == "failed"
    assert outcome.tasks["check_landed"] == "failed"
    alerts = [json.loads(line) for line in settings.alerts_file.read_text().splitlines()]
    assert alerts[-1]["try_number"] == check.retries + 1
    assert "has not landed" in alerts[-1]["error"]
    assert "date=2026-01-01" in alerts[-1]["error"]
