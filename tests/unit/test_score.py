"""Scoring units: the plan, point-in-time shard reads, and atomic publishing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

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


# The fast paths are the library's results, faster ---------------------------------------------


def test_predict_equals_the_pipelines_predict_proba_on_the_same_rows(world):
    # Given the champion and rows with an unknown plan, a missing region and a missing count
    model = score.load_model(world, score.plan(world, DAY))
    columns = score.model_features(model)
    frame = synthetic.activity(world.synthetic, DAY)[columns].head(50).copy()
    frame.loc[0, "plan"] = "platinum"
    frame.loc[1, "region"] = None
    rows = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    missing = np.arange(len(frame)) == 2
    sessions = pa.array(frame["sessions"].to_numpy(), pa.int64(), mask=missing)
    rows = rows.set_column(rows.schema.get_field_index("sessions"), "sessions", sessions)

    # When they are encoded from Arrow and scored by the classifier alone
    assert score.encoder_layout(model) is not None
    fast = score.predict(model, rows)

    # Then the scores are exactly the whole pipeline's
    expected = model.predict_proba(rows.to_pandas())[:, 1]
    np.testing.assert_array_equal(fast, expected)
    assert np.isnan(score.encode(rows, score.encoder_layout(model))[:2, :2]).sum() == 2


def test_a_model_of_another_shape_is_scored_as_a_whole(world):
    model = score.load_model(world, score.plan(world, DAY))
    columns = score.model_features(model)
    rows = pa.Table.from_pandas(synthetic.activity(world.synthetic, DAY)[columns].head(20))
    encoder, classifier = model.named_steps["encode"], model.named_steps["classify"]
    other = Pipeline([("encode", FunctionTransformer(encoder.transform)), ("classify", classifier)])

    assert score.encoder_layout(other) is None
    np.testing.assert_array_equal(
        score.predict(other, rows), other.predict_proba(rows.to_pandas())[:, 1]
    )


def _sorted_day(path, rows: list[tuple[int, datetime, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.int64()),
            "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "sessions": pa.array([r[2] for r in rows], pa.int64()),
        }
    ).sort_by("customer_id")
    pq.write_table(table, path, row_group_size=2)
    return path


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


@pytest.mark.parametrize("in_time_order", [True, False])
def test_latest_rows_equal_the_latest_of_the_window(tmp_path, in_time_order):
    # Given sorted daily files: a customer missing from the newest day, one only before the
    # window, one only after it, a tie across two files, and (or not) a file out of time order
    start, end = _at(2, 0), _at(4, 0)
    files = [
        _sorted_day(
            tmp_path / "d1" / "part-0.parquet",
            [(1, _at(1, 12), 10), (2, _at(1, 23), 20), (4, _at(1, 5), 40)],
        ),
        _sorted_day(
            tmp_path / "d2" / "part-0.parquet",
            [(1, _at(2, 3), 11), (2, _at(2, 0), 21), (3, _at(2, 6), 31), (6, _at(3, 0), 60)],
        ),
        _sorted_day(
            tmp_path / "d3" / "part-0.parquet",
            [
                (1, _at(3, 9) if in_time_order else _at(2, 1), 12),
                (3, _at(3, 1), 32),
                (5, _at(4, 1), 50),
                (6, _at(3, 0), 61),
            ],
        ),
    ]
    expected = features.latest_per_entity(
        features.window_rows(files, "customer_id", "event_timestamp", ["sessions"], start, end),
        "customer_id",
        "event_timestamp",
    )
    keys = [
        features._window_keys(
            pq.ParquetFile(f), "customer_id", "event_timestamp", start, end, None, False
        )
        for f in files
    ]
    assert features._in_time_order(keys) is in_time_order

    for entities in (None, (2, 6), (3, 3)):
        # When the latest rows are picked from keys, then decoded
        latest = features.latest_rows(
            files, "customer_id", "event_timestamp", ["sessions"], start, end, entities
        )

        # Then they are the latest row of each customer in the window, ties to the later file
        wanted = expected
        if entities is not None:
            ids = expected.column("customer_id")
            wanted = expected.filter(
                pc.and_(pc.greater_equal(ids, entities[0]), pc.less_equal(ids, entities[1]))
            )
        assert latest.to_pylist() == wanted.to_pylist()
    assert [row["sessions"] for row in expected.to_pylist()] == (
        [12, 21, 32, 61] if in_time_order else [11, 21, 32, 61]
    )


def test_balanced_shards_in_one_pass_equal_the_split_in_memory(tmp_path):
    # Given sorted files whose customers overlap only in part
    rng = np.random.default_rng(7)
    files = []
    for day in range(3):
        ids = np.sort(rng.choice(5_000, size=2_000, replace=False)) + 10**6
        path = tmp_path / f"d{day}" / "part-0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"customer_id": ids}), path, row_group_size=128)
        files.append(path)

    for shard_rows, max_shards in ((500, 32), (1_000, 3), (10_000, 32), (1, 7)):
        # When the shards are cut from a streaming count in small chunks
        streamed = score._balanced_shards(files, "customer_id", shard_rows, max_shards, 100)

        # Then they are the ranges np.array_split gives on every distinct customer
        assert streamed == score._shards_in_memory(files, "customer_id", shard_rows, max_shards)
