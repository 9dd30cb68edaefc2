"""`batch_scoring` end to end: sharded, atomic, reproducible nightly predictions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pipelines import features, jobs, orchestrator, promote, score, tracking
from pipelines.settings import load_settings

pytestmark = pytest.mark.e2e

NIGHTS = [date(2026, 2, 13), date(2026, 2, 14)]


@pytest.fixture(scope="module")
def scored_world(labelled_world, airflow_db):
    """The labelled world with a champion (v1), a rejected challenger (v2), 3 shards a night."""
    patch, _ = labelled_world
    patch.setenv("MLOPS_SCORING__SHARD_ROWS", "200")
    first = jobs.train_and_gate(NIGHTS[-1], None, None, None, "first champion", "test")
    worse = jobs.train_and_gate(
        NIGHTS[-1], None, None, {"n_estimators": 1, "max_depth": 1}, "worse", "test"
    )
    assert first["outcome"][0]["to_version"] == "1" and worse["outcome"]["alias"] == "challenger"
    return patch, load_settings()


def _score(day: date, **conf):
    dag = orchestrator.load_dag(load_settings(), "batch_scoring")
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return orchestrator.run_dag(dag, midnight, {"date": day.isoformat(), **conf})


def _predictions(settings, day: date) -> pd.DataFrame:
    return pd.read_parquet(score.partition(settings, score.PREDICTIONS, day))


def test_two_nights_publish_one_complete_partition_each(scored_world):
    _, settings = scored_world

    outcomes = [_score(day) for day in NIGHTS]

    assert [o.state for o in outcomes] == ["success", "success"], outcomes
    for day in NIGHTS:
        frame = _predictions(settings, day)
        assert len(frame) == settings.synthetic.customers
        assert frame[settings.dataset.entity].is_unique
        assert frame[settings.scoring.score_column].between(0, 1).all()
        expected = frame[settings.scoring.score_column] >= settings.scoring.threshold
        assert (frame[settings.scoring.predicted_label_column] == expected).all()
    # no staging leftovers beside the partitions
    assert not [p for p in (settings.lake_root / "predictions").iterdir() if p.name.startswith(".")]


def test_lineage_columns_name_the_model_and_the_features_used(scored_world):
    _, settings = scored_world
    day = NIGHTS[-1]
    frame = _predictions(settings, day)
    client = tracking.mlflow_client(settings)
    version = client.get_model_version(settings.training.model_name, "1")

    assert set(frame["model_name"]) == {settings.training.model_name}
    assert set(frame["model_version"]) == {"1"}
    assert set(frame["model_run_id"]) == {version.run_id}
    as_of = score.as_of(day)
    assert frame["feature_timestamp"].max() <= pd.Timestamp(as_of)
    assert frame["feature_timestamp"].min() >= pd.Timestamp(as_of - timedelta(days=7))
    assert frame["scoring_run_id"].nunique() == 1


def test_rerunning_a_night_is_byte_identical(scored_world):
    _, settings = scored_world
    path = score.partition(settings, score.PREDICTIONS, NIGHTS[0])
    before = path.read_bytes()

    assert _score(NIGHTS[0]).state == "success"

    assert path.read_bytes() == before


def test_scored_features_equal_what_feast_returns(scored_world):
    # Given a sample of customers of the night
    _, settings = scored_world
    day = NIGHTS[-1]
    plan = score.plan(settings, day)
    model = score.load_model(settings, plan)
    columns = score.model_features(model)
    ours = score.shard_features(
        settings, plan, plan.shards[0]["first"], plan.shards[-1]["last"], columns
    )
    # (text features come dictionary-encoded, as parquet stores them: compare their values)
    ours = ours.to_pandas().set_index(settings.dataset.entity).sort_index()
    ours = ours.astype({name: object for name in ours.select_dtypes("category").columns})
    sample = ours.sample(50, random_state=1).index

    # When Feast's own point-in-time retrieval serves the same customers at the same time
    store = features.feature_store(settings)
    entity_df = pd.DataFrame(
        {settings.dataset.entity: sample, settings.dataset.timestamp: score.as_of(day)}
    )
    feast_rows = (
        store.get_historical_features(
            entity_df=entity_df,
            features=store.get_feature_service(settings.dataset.feature_service),
        )
        .to_df()
        .set_index(settings.dataset.entity)
        .sort_index()
    )

    # Then the values are the same, and the published scores are exactly the pipeline's
    # predict_proba on Feast's rows (scoring encodes from Arrow, not through the pipeline)
    pd.testing.assert_frame_equal(
        ours.loc[sample.sort_values(), columns], feast_rows[columns], check_dtype=False
    )
    published = _predictions(settings, day).set_index(settings.dataset.entity)
    expected = model.predict_proba(feast_rows[columns])[:, 1].astype(np.float64)
    np.testing.assert_array_equal(
        published.loc[feast_rows.index, settings.scoring.score_column], expected
    )


def test_an_alias_moved_mid_run_does_not_mix_versions(scored_world):
    _, settings = scored_world
    day = NIGHTS[0]
    dag = orchestrator.load_dag(settings, "batch_scoring")

    def move_alias_after_planning(context, result=None):
        promote.promote(settings, "2", "1", "moved mid-run by the test", "test")

    # Given the champion moves from v1 to v2 right after the run planned its version
    dag.get_task("plan").post_execute = move_alias_after_planning
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    try:
        outcome = orchestrator.run_dag(dag, midnight, {"date": day.isoformat()})
        # Then every shard still scored with the version the run started with
        assert outcome.state == "success"
        assert promote.alias_version(settings, promote.CHAMPION) == "2"
        assert set(_predictions(settings, day)["model_version"]) == {"1"}
    finally:
        promote.rollback(settings, "1", "restore after the mid-run test", "test")


def test_shadow_scoring_writes_its_output_and_agreement(scored_world):
    _, settings = scored_world
    day = NIGHTS[-1]
    promote.reject(settings, "2", "challenger for shadow scoring", "test")

    outcome = _score(day)

    assert outcome.tasks["shadow"] == "success"
    shadow = pd.read_parquet(score.partition(settings, score.SHADOW_PREDICTIONS, day))
    assert set(shadow["model_version"]) == {"2"} and len(shadow) == settings.synthetic.customers
    client = tracking.mlflow_client(settings)
    experiment = client.get_experiment_by_name(f"{settings.training.model_name}-shadow")
    (run,) = client.search_runs([experiment.experiment_id], f"tags.date = '{day}'", max_results=1)
    assert {"rank_correlation", "mean_absolute_difference", "flipped_label_share"} <= set(
        run.data.metrics
    )
    assert -1 <= run.data.metrics["rank_correlation"] <= 1


def test_a_shadow_failure_never_fails_the_main_scoring(scored_world, monkeypatch):
    _, settings = scored_world
    day = NIGHTS[-1]
    # Given shadow scoring that cannot write its output
    shadow_dir = settings.lake_root / score.SHADOW_PREDICTIONS
    monkeypatch.setattr(score, "SHADOW_PREDICTIONS", "predictions_shadow/../../../../../dev/null/x")
    outcome = _score(day)

    assert outcome.state == "success"
    assert score.partition(settings, score.PREDICTIONS, day).exists()
    assert shadow_dir.exists()


def test_no_champion_is_a_clear_error_and_writes_nothing(settings, airflow_db):
    # Given features but no registered model
    import pyarrow as pa

    from pipelines import lake, synthetic

    day = date(2026, 1, 3)
    frame = synthetic.activity(settings.synthetic, day)
    lake.write_table_atomic(
        pa.Table.from_pandas(frame, schema=synthetic.ACTIVITY_SCHEMA, preserve_index=False),
        lake.partition_file(settings.validated_root, settings.dataset.raw_dataset, day),
    )
    features.apply_repo(settings)

    outcome = _score(day)

    assert outcome.state == "failed" and outcome.tasks["plan"] == "failed"
    assert not (settings.lake_root / score.PREDICTIONS).exists()
    alert = settings.alerts_file.read_text()
    assert "no 'champion' alias" in alert and alert.count("\n") == 1
