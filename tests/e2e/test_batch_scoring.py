"""`batch_scoring` on a real scheduler: sharded, atomic, reproducible nightly predictions.

One Airflow serves the module, on a labelled world with a champion (v1), a rejected
challenger (v2) and three shards a night; each night is triggered by hand with the
night as its partition key. `drift_monitor` is paused.
"""

from __future__ import annotations

import os
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from pipelines import contracts
from pipelines.io import feast_store, tracking
from pipelines.jobs import training
from pipelines.registry import alias_moves
from pipelines.scoring import predictor, publishing, sharding
from pipelines.settings import load_settings
from tests.airflow_runs import (
    NO_SCHEDULE,
    alerts,
    asset_events,
    clear_and_wait,
    real_airflow,
    run_night,
)

pytestmark = pytest.mark.e2e

NIGHTS = [date(2026, 2, 13), date(2026, 2, 14)]


@pytest.fixture(scope="module")
def scoring(labelled_world):
    """The labelled world with a champion (v1), a rejected challenger (v2), 3 shards a
    night, and an Airflow to score it."""
    patch, _ = labelled_world
    patch.setenv("MLOPS_SCORING__SHARD_ROWS", "200")
    for name, value in NO_SCHEDULE.items():
        patch.setenv(name, value)
    first = training.train_and_gate(NIGHTS[-1], None, None, None, "first champion", "test")
    worse = training.train_and_gate(
        NIGHTS[-1], None, None, {"n_estimators": 1, "max_depth": 1}, "worse", "test"
    )
    assert first["outcome"][0]["to_version"] == "1" and worse["outcome"]["alias"] == "challenger"
    settings = load_settings()
    env = {name: value for name, value in os.environ.items() if name.startswith("MLOPS_")}
    with real_airflow(settings, env, paused=("drift_monitor",)) as api:
        yield settings, api


def _predictions(settings, day: date) -> pd.DataFrame:
    return pd.read_parquet(publishing.partition(settings, publishing.PREDICTIONS, day))


def _rerun(api, run: dict, task_ids: list[str]) -> dict:
    """Clear some tasks of a finished run (those alone) and wait for it to end again."""
    return clear_and_wait(api, "batch_scoring", run["dag_run_id"], task_ids)


def test_two_nights_publish_one_complete_partition_each(scoring):
    settings, api = scoring

    runs = [run_night(api, "batch_scoring", day) for day in NIGHTS]

    assert [run["state"] for run, _ in runs] == ["success", "success"], runs
    assert all(tasks[f"score_shard[{i}]"] == "success" for _, tasks in runs for i in range(3))
    for day in NIGHTS:
        frame = _predictions(settings, day)
        assert len(frame) == settings.synthetic.customers
        assert frame[settings.project.entity.column].is_unique
        assert frame[settings.project.scoring.score_column].between(0, 1).all()
        expected = (
            frame[settings.project.scoring.score_column] >= settings.project.scoring.threshold
        )
        assert (frame[settings.project.scoring.predicted_label_column] == expected).all()
    # each night announces its predictions as that night's partition
    events = asset_events(api, contracts.PREDICTIONS)
    assert [e["partition_key"] for e in events] == [str(day) for day in NIGHTS]
    assert [e["extra"]["rows"] for e in events] == [settings.synthetic.customers] * 2
    # no staging leftovers beside the partitions
    assert not [p for p in (settings.lake_root / "predictions").iterdir() if p.name.startswith(".")]


def test_lineage_columns_name_the_model_and_the_features_used(scoring):
    settings, _ = scoring
    day = NIGHTS[-1]
    frame = _predictions(settings, day)
    client = tracking.mlflow_client(settings)
    version = client.get_model_version(settings.project.model.name, "1")

    assert set(frame["model_name"]) == {settings.project.model.name}
    assert set(frame["model_version"]) == {"1"}
    assert set(frame["model_run_id"]) == {version.run_id}
    as_of = contracts.midnight_after(day)
    assert frame["feature_timestamp"].max() <= pd.Timestamp(as_of)
    assert frame["feature_timestamp"].min() >= pd.Timestamp(as_of - timedelta(days=7))
    assert frame["scoring_run_id"].nunique() == 1


def test_rerunning_a_night_is_byte_identical(scoring):
    settings, api = scoring
    path = publishing.partition(settings, publishing.PREDICTIONS, NIGHTS[0])
    before = path.read_bytes()

    run, _ = run_night(api, "batch_scoring", NIGHTS[0])

    assert run["state"] == "success"
    assert path.read_bytes() == before


def test_scored_features_equal_what_feast_returns(scoring):
    # Given a sample of customers of the night
    settings, _ = scoring
    day = NIGHTS[-1]
    plan = sharding.plan(settings, day)
    model = predictor.load_model(settings, plan)
    columns = model.inputs
    ours = sharding.shard_features(
        settings, plan, plan.shards[0]["first"], plan.shards[-1]["last"], columns
    )
    # (text features come dictionary-encoded, as parquet stores them: compare their values)
    ours = ours.to_pandas().set_index(settings.project.entity.column).sort_index()
    ours = ours.astype({name: object for name in ours.select_dtypes("category").columns})
    sample = ours.sample(50, random_state=1).index

    # When Feast's own point-in-time retrieval serves the same customers at the same time
    store = feast_store.feature_store(settings)
    entity_df = pd.DataFrame(
        {
            settings.project.entity.column: sample,
            settings.project.source.timestamp: contracts.midnight_after(day),
        }
    )
    feast_rows = (
        store.get_historical_features(
            entity_df=entity_df,
            features=store.get_feature_service(settings.project.model.feature_service),
        )
        .to_df()
        .set_index(settings.project.entity.column)
        .sort_index()
    )

    # Then the values are the same, and the published scores are exactly the pipeline's
    # predict_proba on Feast's rows (scoring encodes from Arrow, not through the pipeline)
    pd.testing.assert_frame_equal(
        ours.loc[sample.sort_values(), columns], feast_rows[columns], check_dtype=False
    )
    published = _predictions(settings, day).set_index(settings.project.entity.column)
    expected = model.pipeline.predict_proba(feast_rows[columns])[:, 1].astype(np.float64)
    np.testing.assert_array_equal(
        published.loc[feast_rows.index, settings.project.scoring.score_column], expected
    )


def test_shards_cleared_after_the_alias_moved_still_score_with_the_planned_version(scoring):
    settings, api = scoring
    day = NIGHTS[0]
    (run,) = [r for r in api.runs("batch_scoring") if r["partition_key"] == str(day)][-1:]
    # Given the champion moved from v1 to v2 after the night was planned
    alias_moves.promote(settings, "2", "1", "moved mid-run by the test", "test")
    try:
        # When the shards and the publish are cleared and run again
        again = _rerun(api, run, ["score_shard", "publish"])

        # Then every shard still scored with the version the run planned
        assert again["state"] == "success"
        assert set(_predictions(settings, day)["model_version"]) == {"1"}
    finally:
        alias_moves.rollback(settings, "1", "restore after the mid-run test", "test")
        alias_moves.reject(settings, "2", "challenger again", "test")


def test_shadow_scoring_writes_its_output_and_agreement(scoring):
    settings, _ = scoring
    day = NIGHTS[-1]

    shadow = pd.read_parquet(publishing.partition(settings, publishing.SHADOW_PREDICTIONS, day))

    assert set(shadow["model_version"]) == {"2"} and len(shadow) == settings.synthetic.customers
    client = tracking.mlflow_client(settings)
    experiment = client.get_experiment_by_name(
        contracts.shadow_experiment(settings.project.model.name)
    )
    (run,) = client.search_runs([experiment.experiment_id], f"tags.date = '{day}'", max_results=1)
    assert {"rank_correlation", "mean_absolute_difference", "flipped_label_share"} <= set(
        run.data.metrics
    )
    assert -1 <= run.data.metrics["rank_correlation"] <= 1


def test_a_shadow_failure_never_fails_the_main_scoring(scoring):
    settings, api = scoring
    day = NIGHTS[-1]
    # Given shadow scoring that cannot write its output (a file where its folder goes)
    shadow_dir = settings.lake_root / publishing.SHADOW_PREDICTIONS
    aside = shadow_dir.with_name("shadow-aside")
    shadow_dir.rename(aside)
    shadow_dir.write_text("in the way")
    try:
        run, tasks = run_night(api, "batch_scoring", day)
    finally:
        shadow_dir.unlink()
        aside.rename(shadow_dir)

    assert run["state"] == "success" and tasks["shadow"] == "success"
    assert publishing.partition(settings, publishing.PREDICTIONS, day).exists()


def test_publish_cleared_alone_after_success_changes_nothing(scoring):
    settings, api = scoring
    day = NIGHTS[-1]
    (run,) = [r for r in api.runs("batch_scoring") if r["partition_key"] == str(day)][-1:]
    path = publishing.partition(settings, publishing.PREDICTIONS, day)
    before = path.read_bytes()

    again = _rerun(api, run, ["publish"])

    assert again["state"] == "success"
    assert path.read_bytes() == before
    assert alerts(settings, day) == []


def test_publish_cleared_without_its_shards_says_which_task_to_clear(scoring):
    settings, api = scoring
    day = NIGHTS[0]
    (run,) = [r for r in api.runs("batch_scoring") if r["partition_key"] == str(day)][-1:]
    # Given the night's partition is gone, and so are the shards it was joined from
    path = publishing.partition(settings, publishing.PREDICTIONS, day)
    aside = path.with_name("kept-aside")
    path.rename(aside)
    try:
        # When `publish` alone is cleared
        _rerun(api, run, ["publish"])

        # Then it fails at once, naming the task to clear instead (Airflow judges the run by
        # its last task, `shadow`, which was not cleared: the run itself stays a success)
        tries = {ti["task_id"]: ti for ti in api.task_instances("batch_scoring", run["dag_run_id"])}
        assert tries["publish"]["state"] == "failed"
        (raised,) = alerts(settings, day)
        assert raised["task_id"] == "publish" and "clear `plan`" in raised["error"]
        assert raised["try_number"] == tries["publish"]["try_number"]
    finally:
        aside.rename(path)


def test_no_champion_is_a_clear_error_and_writes_nothing(scoring):
    settings, api = scoring
    day = date(2026, 2, 10)
    client = tracking.mlflow_client(settings)
    name = settings.project.model.name
    # Given no model holds the champion alias
    client.delete_registered_model_alias(name, contracts.CHAMPION)
    try:
        run, tasks = run_night(api, "batch_scoring", day)
    finally:
        client.set_registered_model_alias(name, contracts.CHAMPION, "1")

    assert run["state"] == "failed" and tasks["plan"] == "failed"
    assert not publishing.partition(settings, publishing.PREDICTIONS, day).exists()
    (raised,) = alerts(settings, day)
    assert "no 'champion' alias" in raised["error"] and raised["try_number"] == 1
