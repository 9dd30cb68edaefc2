"""Scoring units: the plan, point-in-time shard reads, and atomic publishing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pytest

from pipelines import features, jobs, lake, promote, score, synthetic, train
from pipelines.errors import NoChampionError, NoFeaturesError
from pipelines.settings import load_settings

DAY = date(2026, 1, 8)


def _publish_day(settings, day: date, frame: pd.DataFrame | None = None) -> None:
    frame = synthetic.activity(settings.synthetic, day) if frame is None else frame
    lake.write_table_atomic(
        pa.Table.from_pandas(frame, schema=synthetic.ACTIVITY_SCHEMA, preserve_index=False),
        lake.partition_file(settings.validated_root, settings.dataset.raw_dataset, day),
    )


def _labelled_frame(settings) -> pd.DataFrame:
    frames = []
    for offset in range(6):
        day = DAY - timedelta(days=offset)
        frame = synthetic.activity(settings.synthetic, day)
        probability = synthetic.churn_probability(settings.synthetic, frame, day)
        frame["event_timestamp"] = pd.Timestamp(score.as_of(day))
        frame["churned"] = (probability > 0.15).astype("int64")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def world(settings, monkeypatch):
    """Eight days of validated features and a champion (v1)."""
    monkeypatch.setenv("MLOPS_TRAINING__MIN_ROWS", "10")
    settings = load_settings()
    for offset in range(8):
        _publish_day(settings, DAY - timedelta(days=offset))
    features.apply_repo(settings)
    model = train.train_and_register(settings, _labelled_frame(settings), {"n_estimators": 20})
    promote.promote(settings, model.version, None, "unit test champion", "test")
    return settings


def test_scoring_run_id_depends_only_on_the_inputs():
    first = score.scoring_run_id(DAY, "churn", "1", "abc")
    assert first == score.scoring_run_id(DAY, "churn", "1", "abc")
    assert first != score.scoring_run_id(DAY, "churn", "2", "abc")
    assert first != score.scoring_run_id(DAY + timedelta(days=1), "churn", "1", "abc")


@pytest.mark.parametrize(
    ("shard_rows", "max_shards", "expected"), [(100, 32, 3), (1_000, 32, 1), (10, 4, 4)]
)
def test_shard_count_follows_data_size_and_settings(
    world, monkeypatch, shard_rows, max_shards, expected
):
    monkeypatch.setenv("MLOPS_SCORING__SHARD_ROWS", str(shard_rows))
    monkeypatch.setenv("MLOPS_SCORING__MAX_SHARDS", str(max_shards))

    plan = score.plan(load_settings(), DAY)

    assert len(plan.shards) == expected
    assert sum(shard["customers"] for shard in plan.shards) == world.synthetic.customers
    for before, after in zip(plan.shards, plan.shards[1:], strict=False):
        assert before["last"] < after["first"]
    assert plan.model_version == "1" and plan.as_of == score.as_of(DAY).isoformat()


def test_no_champion_is_a_clear_error(settings):
    with pytest.raises(NoChampionError, match="no 'champion' alias"):
        score.plan(settings, DAY)


def test_no_features_in_the_window_is_a_clear_error(world):
    with pytest.raises(NoFeaturesError, match="no validated features"):
        score.plan(world, DAY + timedelta(days=30))


def test_shard_features_are_point_in_time_within_the_ttl(world):
    # Given customer A with a row after the scoring time, and B whose only row is stale
    settings = world
    entity = settings.dataset.entity
    plan = score.plan(settings, DAY)
    frame = synthetic.activity(settings.synthetic, DAY + timedelta(days=1))
    frame["event_timestamp"] = pd.Timestamp(score.as_of(DAY)) + pd.Timedelta(hours=1)
    frame["sessions"] = 999
    _publish_day(settings, DAY + timedelta(days=1), frame)

    rows = score.shard_features(settings, plan, 0, 10**9, ["sessions"]).to_pandas()

    # Then no value from after the scoring time is used
    assert (rows["sessions"] != 999).all()
    assert rows[entity].is_unique and len(rows) == settings.synthetic.customers
    assert (rows["event_timestamp"] <= pd.Timestamp(score.as_of(DAY))).all()


def test_a_crash_before_publish_leaves_the_previous_partition_whole(world, monkeypatch):
    monkeypatch.setenv("MLOPS_SCORING__SHARD_ROWS", "100")
    settings = load_settings()
    plan = score.plan(settings, DAY)
    for shard in plan.shards:
        score.score_shard(settings, plan, shard)
    published = score.publish(settings, plan)
    before = score.partition(settings, score.PREDICTIONS, DAY).read_bytes()

    # When a re-run scores its shards but dies before publishing
    for shard in plan.shards[:1]:
        score.score_shard(settings, plan, shard)
    with pytest.raises(FileNotFoundError, match="shards not scored"):
        score.publish(settings, plan)

    # Then the published partition is exactly the previous one
    assert published["rows"] == settings.synthetic.customers
    assert score.partition(settings, score.PREDICTIONS, DAY).read_bytes() == before


def test_the_night_is_the_forms_date_then_the_latest_event_then_yesterday():
    event = SimpleNamespace(extra={"date": "2026-01-05", "rows": 3})
    later = SimpleNamespace(extra={"date": "2026-01-06", "rows": 3})
    run_after = datetime(2026, 1, 10, 3, tzinfo=UTC)

    assert jobs.night("2026-01-02", {"features": [event]}, run_after) == date(2026, 1, 2)
    assert jobs.night(None, {"features": [event, later]}, run_after) == date(2026, 1, 6)
    assert jobs.night(None, {}, run_after) == date(2026, 1, 9)
