"""Drift monitoring on a scored world: drift found on the right features, one retrain
request per cooldown, metrics as a time series, realized performance from late labels.

The jobs `drift_monitor`'s tasks call, on 20 quiet and 3 drifted scored nights; the DAG
itself (one run per `predictions` night, starting `training`) runs in the soak test.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pytest

from pipelines import contracts
from pipelines.demo import synthetic
from pipelines.io import lake, tracking
from pipelines.jobs import batch_scoring, drift_monitor, training
from pipelines.monitoring import nightly
from pipelines.scoring import publishing, sharding
from pipelines.settings import load_settings

pytestmark = pytest.mark.e2e

LAST_HISTORY_DAY = date(2026, 2, 14)
DRIFT_START = date(2026, 2, 15)


def _score_night(day: date) -> None:
    plan = batch_scoring.plan_scoring(day)
    for shard in plan["shards"]:
        batch_scoring.score_shard(plan, shard)
    batch_scoring.publish_predictions(plan)


@pytest.fixture(scope="module")
def monitored_world(labelled_world):
    """A champion, 20 scored nights without drift, and 3 scored nights with drift."""
    patch, _ = labelled_world
    training.train_and_gate(LAST_HISTORY_DAY, None, None, None, "champion", "test")
    patch.setenv("MLOPS_SYNTHETIC__DRIFT_START", DRIFT_START.isoformat())
    patch.setenv("MLOPS_SYNTHETIC__DRIFT_FEATURES", '["usage_minutes", "sessions"]')
    patch.setenv("MLOPS_SYNTHETIC__DRIFT_MAGNITUDE", "1.5")
    settings = load_settings()
    for offset in range(3):
        day = DRIFT_START + timedelta(days=offset)
        frame = synthetic.activity(settings.synthetic, day)
        lake.write_table_atomic(
            pa.Table.from_pandas(frame, schema=synthetic.ACTIVITY_SCHEMA, preserve_index=False),
            lake.partition_file(settings.validated_root, settings.project.source.dataset, day),
        )
    quiet = [LAST_HISTORY_DAY - timedelta(days=n) for n in range(20)]
    for day in [*quiet, DRIFT_START, DRIFT_START + timedelta(days=1)]:
        _score_night(day)
    return settings, quiet


def test_twenty_quiet_nights_raise_no_alarm(monitored_world):
    settings, quiet = monitored_world

    reports = [nightly.check(settings, day) for day in quiet]

    assert [r.reasons for r in reports if r.alarm] == []
    assert all(f.level != "alert" for r in reports for f in r.features)


def test_injected_drift_is_found_on_the_right_features_and_requests_retraining(monitored_world):
    settings, _ = monitored_world

    report = drift_monitor.check_drift(DRIFT_START)
    request = drift_monitor.retrain_request(report, [], 0)

    assert request is not None
    assert request["date"] == DRIFT_START.isoformat()
    assert {"usage_minutes", "sessions"} <= set(request["drifted_features"])
    assert "drift on 2026-02-15" in request["reason"]
    report = json.loads((nightly.report_dir(settings, DRIFT_START) / "report.json").read_text())
    alerting = {f["feature"] for f in report["features"] if f["level"] == "alert"}
    assert alerting <= {"usage_minutes", "sessions", "days_since_last_login"}
    numeric = {f["feature"]: f["wasserstein"] for f in report["features"] if f["kind"] == "numeric"}
    assert numeric["usage_minutes"] >= settings.drift.numeric_wasserstein.alert
    assert all(value is not None for value in numeric.values())
    page = (nightly.report_dir(settings, DRIFT_START) / "report.html").read_text()
    assert "<img" in page and "Wasserstein (normed)" in page


def test_the_cooldown_holds_under_repeated_alarms(monitored_world):
    settings, _ = monitored_world
    next_day = DRIFT_START + timedelta(days=1)

    report = drift_monitor.check_drift(next_day)

    assert report["alarm"]
    earlier = SimpleNamespace(extra={"date": DRIFT_START.isoformat()}, timestamp=datetime.now(UTC))
    assert drift_monitor.retrain_request(report, [earlier], 0) is None
    assert json.loads((nightly.report_dir(settings, next_day) / "report.json").read_text())["alarm"]


def test_every_night_is_logged_to_mlflow_as_a_time_series(monitored_world):
    settings, _ = monitored_world
    client = tracking.mlflow_client(settings)
    experiment = client.get_experiment_by_name(
        contracts.drift_experiment(settings.project.model.name)
    )
    (run,) = client.search_runs([experiment.experiment_id], "tags.model_version = '1'")

    history = client.get_metric_history(run.info.run_id, "drift.usage_minutes")
    wasserstein = client.get_metric_history(run.info.run_id, "drift.usage_minutes.wasserstein")

    steps = sorted(metric.step for metric in history)
    assert steps[-2:] == [DRIFT_START.toordinal(), DRIFT_START.toordinal() + 1]
    assert len(steps) >= 2
    assert sorted(metric.step for metric in wasserstein) == steps


def test_performance_is_measured_when_delayed_labels_arrive(monitored_world):
    # Given predictions made 30 days before labels for them landed
    settings, _ = monitored_world
    predicted_on = LAST_HISTORY_DAY - timedelta(days=settings.synthetic.label_delay_days)
    _score_night(predicted_on)

    (performance,) = nightly.realized_performance(settings, LAST_HISTORY_DAY)

    assert performance.model_version == "1" and performance.nights == [predicted_on.isoformat()]
    assert performance.rows == settings.synthetic.customers
    assert 0.5 < performance.metrics["roc_auc"] <= 1.0
    assert nightly.realized_performance(settings, LAST_HISTORY_DAY - timedelta(days=1)) == []


def _labels_landing_on(settings, landing_day: date, nights: list[date]) -> None:
    """One label partition holding the generator's labels of several nights."""
    delay = timedelta(days=settings.synthetic.label_delay_days)
    frames = [synthetic.labels(settings.synthetic, night + delay) for night in nights]
    lake.write_table_atomic(
        pa.Table.from_pandas(
            pd.concat(frames, ignore_index=True),
            schema=synthetic.LABEL_SCHEMA,
            preserve_index=False,
        ),
        lake.partition_file(settings.raw_root, settings.project.label.dataset, landing_day),
    )


def test_labels_of_nights_two_versions_scored_are_judged_by_each_versions_holdout(
    monitored_world,
):
    # Given a night scored by the champion (v1), an earlier one by a second version (v2),
    # and one label partition landing tonight with the labels of both nights
    settings, quiet = monitored_world
    by_v1, by_v2, tonight = quiet[-1], quiet[-1] - timedelta(days=6), DRIFT_START + timedelta(2)
    worse = training.train_and_gate(
        LAST_HISTORY_DAY,
        None,
        None,
        {"n_estimators": 1, "max_depth": 1},
        "a second version",
        "test",
    )
    assert worse["outcome"]["to_version"] == "2"
    plan = sharding.plan(settings, by_v2, contracts.CHALLENGER)
    for shard in plan.shards:
        publishing.score_shard(settings, plan, shard)
    publishing.publish(settings, plan)
    _labels_landing_on(settings, tonight, [by_v1, by_v2])
    _score_night(tonight)

    # When tonight is checked
    report = contracts.DriftReport.from_xcom(drift_monitor.check_drift(tonight))

    # Then each version's predictions are measured apart, against that version's own holdout
    client = tracking.mlflow_client(settings)
    assert [item.model_version for item in report.performance] == ["1", "2"]
    for item, night in zip(report.performance, [by_v1, by_v2], strict=True):
        run_id = client.get_model_version(settings.project.model.name, item.model_version).run_id
        holdout = client.get_run(run_id).data.metrics["holdout_roc_auc"]
        assert item.nights == [night.isoformat()] and item.rows == settings.synthetic.customers
        assert item.holdout_metrics["roc_auc"] == holdout
        assert item.roc_auc_drop == pytest.approx(holdout - item.metrics["roc_auc"])
    # And the level the alarm judges is that of the version that scored tonight (v1)
    assert report.model_version == "1" and report.performance_level == report.performance[0].level
    # And each version's realized metrics join its own drift time series, at tonight's step
    experiment = client.get_experiment_by_name(
        contracts.drift_experiment(settings.project.model.name)
    )
    (run,) = client.search_runs([experiment.experiment_id], "tags.model_version = '2'")
    history = client.get_metric_history(run.info.run_id, "realized.roc_auc")
    assert [(m.step, m.value) for m in history] == [
        (tonight.toordinal(), report.performance[1].metrics["roc_auc"])
    ]
    page = (nightly.report_dir(settings, tonight) / "report.html").read_text()
    assert "by the model version that predicted" in page and "1 (scored tonight)" in page
