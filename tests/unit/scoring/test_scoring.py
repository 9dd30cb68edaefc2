"""Scoring units: the plan, point-in-time shard reads, and atomic publishing."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from pipelines import contracts
from pipelines.demo import synthetic
from pipelines.demo.worlds import labelled_frame
from pipelines.errors import NoChampionError, NoFeaturesError, RerunError
from pipelines.features import point_in_time
from pipelines.io import feast_store, lake
from pipelines.registry import alias_moves
from pipelines.scoring import predictor, publishing, shadowing, sharding
from pipelines.settings import load_settings
from pipelines.training import encoding, registration

DAY = date(2026, 1, 8)


def _publish_day(settings, day: date, frame: pd.DataFrame | None = None) -> None:
    frame = synthetic.activity(settings.synthetic, day) if frame is None else frame
    lake.write_table_atomic(
        pa.Table.from_pandas(frame, schema=synthetic.ACTIVITY_SCHEMA, preserve_index=False),
        lake.partition_file(settings.validated_root, settings.project.source.dataset, day),
    )


@pytest.fixture
def world(settings, monkeypatch):
    """Eight days of validated features and a champion (v1)."""
    monkeypatch.setenv("MLOPS_TRAINING__MIN_ROWS", "10")
    settings = load_settings()
    for offset in range(8):
        _publish_day(settings, DAY - timedelta(days=offset))
    feast_store.apply_repo(settings)
    model = registration.train_and_register(
        settings, labelled_frame(settings, DAY), {"n_estimators": 20}
    )
    alias_moves.promote(settings, model.version, None, "unit test champion", "test")
    return settings


def test_scoring_run_id_depends_only_on_the_inputs():
    first = sharding.scoring_run_id(DAY, "churn", "1", "abc")
    assert first == sharding.scoring_run_id(DAY, "churn", "1", "abc")
    assert first != sharding.scoring_run_id(DAY, "churn", "2", "abc")
    assert first != sharding.scoring_run_id(DAY + timedelta(days=1), "churn", "1", "abc")


@pytest.mark.parametrize(
    ("shard_rows", "max_shards", "expected"), [(100, 32, 3), (1_000, 32, 1), (10, 4, 4)]
)
def test_shard_count_follows_data_size_and_settings(
    world, monkeypatch, shard_rows, max_shards, expected
):
    monkeypatch.setenv("MLOPS_SCORING__SHARD_ROWS", str(shard_rows))
    monkeypatch.setenv("MLOPS_SCORING__MAX_SHARDS", str(max_shards))

    plan = sharding.plan(load_settings(), DAY)

    assert len(plan.shards) == expected
    for before, after in zip(plan.shards, plan.shards[1:], strict=False):
        assert before["last"] + 1 == after["first"]
    customers = synthetic.activity(world.synthetic, DAY)["customer_id"]
    assert plan.shards[0]["first"] <= customers.min()
    assert plan.shards[-1]["last"] >= customers.max()
    assert plan.model_version == "1" and plan.as_of == contracts.midnight_after(DAY).isoformat()


def test_no_champion_is_a_clear_error(settings):
    with pytest.raises(NoChampionError, match="no 'champion' alias"):
        sharding.plan(settings, DAY)


def test_no_features_in_the_window_is_a_clear_error(world):
    with pytest.raises(NoFeaturesError, match="no validated features"):
        sharding.plan(world, DAY + timedelta(days=30))


def test_shard_features_are_point_in_time_within_the_ttl(world):
    # Given customer A with a row after the scoring time, and B whose only row is stale
    settings = world
    entity = settings.project.entity.column
    plan = sharding.plan(settings, DAY)
    frame = synthetic.activity(settings.synthetic, DAY + timedelta(days=1))
    frame["event_timestamp"] = pd.Timestamp(contracts.midnight_after(DAY)) + pd.Timedelta(hours=1)
    frame["sessions"] = 999
    _publish_day(settings, DAY + timedelta(days=1), frame)

    rows = sharding.shard_features(settings, plan, 0, 10**9, ["sessions"]).to_pandas()

    # Then no value from after the scoring time is used
    assert (rows["sessions"] != 999).all()
    assert rows[entity].is_unique and len(rows) == settings.synthetic.customers
    assert (rows["event_timestamp"] <= pd.Timestamp(contracts.midnight_after(DAY))).all()


@pytest.fixture
def scored_night(world, monkeypatch):
    """The night DAY scored in three shards and published: its plan and what publish said."""
    monkeypatch.setenv("MLOPS_SCORING__SHARD_ROWS", "100")
    settings = load_settings()
    plan = sharding.plan(settings, DAY)
    for shard in plan.shards:
        publishing.score_shard(settings, plan, shard)
    return plan, publishing.publish(settings, plan)


def test_a_crash_before_publish_leaves_the_previous_partition_whole(settings, scored_night):
    _, published = scored_night
    before = publishing.partition(settings, publishing.PREDICTIONS, DAY).read_bytes()
    # Given a new champion, whose re-run of the night scores one shard and dies
    model = registration.train_and_register(
        settings, labelled_frame(settings, DAY), {"n_estimators": 5}
    )
    alias_moves.promote(settings, model.version, "1", "a new champion", "test")
    plan = sharding.plan(load_settings(), DAY)
    publishing.score_shard(settings, plan, plan.shards[0])

    # When its publish runs without the other shards
    with pytest.raises(RerunError, match="clear `plan`"):
        publishing.publish(settings, plan)

    # Then the published partition is exactly the previous one
    assert published.rows == settings.synthetic.customers
    assert publishing.partition(settings, publishing.PREDICTIONS, DAY).read_bytes() == before


def test_publish_again_after_success_does_nothing_and_keeps_the_bytes(settings, scored_night):
    # Given a night published (its shards removed with its staging folder)
    plan, published = scored_night
    path = publishing.partition(settings, publishing.PREDICTIONS, DAY)
    before = path.read_bytes()

    # When publish runs again (a cleared task, or a retry after a crash past the rename)
    again = publishing.publish(settings, plan)

    # Then it reports the same partition and writes nothing
    assert again == published and path.read_bytes() == before


def test_publish_without_shards_or_its_partition_names_the_task_to_clear(settings, scored_night):
    plan, _ = scored_night
    publishing.partition(settings, publishing.PREDICTIONS, DAY).unlink()

    with pytest.raises(RerunError, match="clear `plan` with its downstream tasks"):
        publishing.publish(settings, plan)


# The fast paths are the library's results, faster ---------------------------------------------


def test_predict_equals_the_pipelines_predict_proba_on_the_same_rows(world):
    # Given the champion and rows with an unknown plan, a missing region and a missing count
    model = predictor.load_model(world, sharding.plan(world, DAY))
    columns = model.inputs
    frame = synthetic.activity(world.synthetic, DAY)[columns].head(50).copy()
    frame.loc[0, "plan"] = "platinum"
    frame.loc[1, "region"] = None
    rows = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    missing = np.arange(len(frame)) == 2
    sessions = pa.array(frame["sessions"].to_numpy(), pa.int64(), mask=missing)
    rows = rows.set_column(rows.schema.get_field_index("sessions"), "sessions", sessions)

    # When they are encoded from Arrow as the model's declaration says, and scored by the
    # classifier alone
    assert model.encoding is not None
    fast = predictor.predict(model, rows)

    # Then the scores are exactly the whole pipeline's, from the encoder's own matrix
    expected = model.pipeline.predict_proba(rows.to_pandas())[:, 1]
    np.testing.assert_array_equal(fast, expected)
    matrix = encoding.encode(rows, model.encoding)
    np.testing.assert_array_equal(
        matrix, model.pipeline.named_steps["encode"].transform(rows.to_pandas())
    )
    assert np.isnan(matrix[:2, :2]).sum() == 2

    # And so they are from text read dictionary-encoded, in chunks of different dictionaries
    np.testing.assert_array_equal(predictor.predict(model, _text_as_dictionaries(rows)), expected)

    # And from the rows' Python values, as the online service scores them
    values = predictor.predict_values(model, rows.to_pydict(), rows.schema)
    np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize("early_stopping", [True, False])
def test_a_request_is_scored_as_the_classifiers_own_predict_proba(early_stopping):
    # Given an XGBoost classifier, stopped early at its best iteration or not, and rows
    # with missing values
    from xgboost import XGBClassifier

    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 3))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=600) > 0).astype(int)
    classifier = XGBClassifier(
        n_estimators=200, max_depth=4, n_jobs=1, early_stopping_rounds=5 if early_stopping else None
    )
    classifier.fit(x[:400], y[:400], eval_set=[(x[400:], y[400:])], verbose=False)
    if early_stopping:
        assert classifier.best_iteration + 1 < 200  # the trees past the best are not used
    names = ["a", "b", "c"]
    declared = encoding.ModelEncoding(names, names, {})
    model = predictor.ScoringModel(
        Pipeline([("encode", "passthrough"), ("classify", classifier)]), declared
    )
    columns = {n: [None if np.isnan(v) else float(v) for v in x[:, i]] for i, n in enumerate(names)}

    # When they are scored as the online service scores a request
    scores = predictor.predict_values(model, columns, pa.schema([]))

    # Then the probabilities are the classifier's predict_proba, bit for bit
    assert scores.tobytes() == classifier.predict_proba(x)[:, 1].tobytes()


def test_encoding_python_values_gives_the_arrow_encodings_matrix_value_for_value():
    # Given columns of every encoded kind: integers past 2**53 (rounded to a double),
    # doubles, booleans, nulls everywhere, text with unknown and repeated categories
    rng = np.random.default_rng(7)
    rows = 200
    big = rng.integers(-(2**62), 2**62, rows)
    columns = {
        "count": [None if i % 7 == 0 else int(v) for i, v in enumerate(big)],
        "amount": [None if i % 5 == 0 else float(v) for i, v in enumerate(rng.normal(size=rows))],
        "flag": [None if i % 3 == 0 else bool(v) for i, v in enumerate(rng.integers(0, 2, rows))],
        "plan": [None if i % 4 == 0 else ["a", "b", "zz", "c"][i % 4] for i in range(rows)],
    }
    declared = encoding.ModelEncoding(
        inputs=list(columns),
        outputs=["plan", "count", "amount", "flag"],
        categories={"plan": ["c", "a", "b", "a"]},  # "zz" unknown; "a" coded at its first place
    )
    table = pa.table(
        {
            "count": pa.array(columns["count"], pa.int64()),
            "amount": pa.array(columns["amount"], pa.float64()),
            "flag": pa.array(columns["flag"], pa.bool_()),
            "plan": pa.array(columns["plan"], pa.string()),
        }
    )

    # When they are encoded from Python values and from Arrow
    from_values = encoding.encode_values(columns, declared)
    from_arrow = encoding.encode(table, declared)

    # Then the matrices are equal bit for bit, NaN where null or unknown
    assert from_values.tobytes() == from_arrow.tobytes()
    assert np.isnan(from_values[:, 0]).sum() == rows // 2


def _text_as_dictionaries(rows):
    """`rows` with each text column dictionary-encoded in two chunks of their own dictionaries."""
    for index, field in enumerate(rows.schema):
        if pa.types.is_string(field.type):
            values = rows.column(index).combine_chunks()
            chunks = [values.slice(0, 20).dictionary_encode(), values.slice(20).dictionary_encode()]
            rows = rows.set_column(index, field.name, pa.chunked_array(chunks))
    return rows


def test_a_model_without_a_declared_encoding_is_scored_as_a_whole(world):
    model = predictor.load_model(world, sharding.plan(world, DAY))
    columns = model.inputs
    rows = pa.Table.from_pandas(synthetic.activity(world.synthetic, DAY)[columns].head(20))
    encoder, classifier = (
        model.pipeline.named_steps["encode"],
        model.pipeline.named_steps["classify"],
    )
    fitted = FunctionTransformer(encoder.transform).fit(rows.to_pandas())  # names its inputs
    pipeline = Pipeline([("encode", fitted), ("classify", classifier)])
    other = predictor.ScoringModel(pipeline, None)

    expected = pipeline.predict_proba(rows.to_pandas())[:, 1]
    np.testing.assert_array_equal(predictor.predict(other, rows), expected)
    np.testing.assert_array_equal(predictor.predict(other, _text_as_dictionaries(rows)), expected)
    values = predictor.predict_values(other, rows.to_pydict(), rows.schema)
    np.testing.assert_array_equal(values, expected)


def _text_id(number: int) -> str:
    """A text customer id, in the order of the numbers below 10."""
    return f"id-{number}"


def _sorted_day(path, rows: list[tuple[int, datetime, int]], key=int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "customer_id": pa.array([key(r[0]) for r in rows]),
            "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "sessions": pa.array([r[2] for r in rows], pa.int64()),
        }
    ).sort_by("customer_id")
    pq.write_table(table, path, row_group_size=2)
    return path


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


def _window(start, end, entities=None) -> point_in_time.Window:
    return point_in_time.Window("customer_id", "event_timestamp", start, end, entities)


def _assert_latest_rows_are_the_windows(
    files: list[Path], start: datetime, end: datetime, ranges: list[tuple | None]
) -> list[int]:
    """Check `latest_rows` against the latest of the whole window for each customer range;
    return every customer's latest `sessions`."""
    expected = point_in_time.latest_per_entity(
        point_in_time.window_rows(files, _window(start, end), ["sessions"]),
        "customer_id",
        "event_timestamp",
    )
    for entities in ranges:
        latest = point_in_time.latest_rows(files, _window(start, end, entities), ["sessions"])
        wanted = expected
        if entities is not None:
            ids = expected.column("customer_id")
            wanted = expected.filter(
                pc.and_(pc.greater_equal(ids, entities[0]), pc.less_equal(ids, entities[1]))
            )
        assert latest.to_pylist() == wanted.to_pylist()
    return [row["sessions"] for row in expected.to_pylist()]


@pytest.mark.parametrize("key", [int, _text_id], ids=["integer-ids", "text-ids"])
@pytest.mark.parametrize("in_time_order", [True, False])
def test_latest_rows_equal_the_latest_of_the_window(tmp_path, in_time_order, key):
    # Given sorted daily files: a customer missing from the newest day, one only before the
    # window, one only after it, a tie across two files, and (or not) a file out of time order
    start, end = _at(2, 0), _at(4, 0)
    files = [
        _sorted_day(
            tmp_path / "d1" / "part-0.parquet",
            [(1, _at(1, 12), 10), (2, _at(1, 23), 20), (4, _at(1, 5), 40)],
            key,
        ),
        _sorted_day(
            tmp_path / "d2" / "part-0.parquet",
            [(1, _at(2, 3), 11), (2, _at(2, 0), 21), (3, _at(2, 6), 31), (6, _at(3, 0), 60)],
            key,
        ),
        _sorted_day(
            tmp_path / "d3" / "part-0.parquet",
            [
                (1, _at(3, 9) if in_time_order else _at(2, 1), 12),
                (3, _at(3, 1), 32),
                (5, _at(4, 1), 50),
                (6, _at(3, 0), 61),
            ],
            key,
        ),
    ]
    keys = [
        point_in_time._window_keys(pq.ParquetFile(f), _window(start, end), False) for f in files
    ]
    assert point_in_time._in_time_order(keys) is in_time_order

    # When the latest rows are picked from keys, then decoded, they are the latest row of
    # each customer in the window, ties to the later file
    ranges = [None, (key(2), key(6)), (key(3), key(3))]
    sessions = _assert_latest_rows_are_the_windows(files, start, end, ranges)
    assert sessions == ([12, 21, 32, 61] if in_time_order else [11, 21, 32, 61])


@pytest.mark.parametrize("a_later_older_row", [False, True])
def test_older_row_groups_beaten_by_the_newest_file_are_not_read_and_change_nothing(
    tmp_path, a_later_older_row
):
    # Given a newest day holding customers 1..6 once each, and an older day in row groups
    # of two: 1-2 (older rows), 3-4 (customer 4's row later than the newest day's, or not)
    # and 7-8 (customers the newest day lacks)
    start, end = _at(1, 0), _at(4, 0)
    older = _sorted_day(
        tmp_path / "d2" / "part-0.parquet",
        [
            (1, _at(2, 1), 10),
            (2, _at(2, 2), 20),
            (3, _at(2, 3), 30),
            (4, _at(3, 9) if a_later_older_row else _at(2, 6), 40),
            (7, _at(2, 4), 70),
            (8, _at(2, 5), 80),
        ],
    )
    newest = _sorted_day(
        tmp_path / "d3" / "part-0.parquet",
        [(customer, _at(3, 1 + customer), customer * 10 + 1) for customer in range(1, 7)],
    )
    files = [older, newest]
    later = point_in_time._window_keys(pq.ParquetFile(newest), _window(start, end), False)

    # Then the statistics prove beaten only the groups every row of which loses
    losing = point_in_time._losing_groups(
        pq.ParquetFile(older), _window(start, end), [0, 1, 2], later
    )
    assert losing == ({0} if a_later_older_row else {0, 1})

    # And the latest rows are those of the whole window all the same
    sessions = _assert_latest_rows_are_the_windows(files, start, end, [None, (1, 4), (2, 7)])
    fourth = 40 if a_later_older_row else 41
    assert sessions == [11, 21, 31, fourth, 51, 61, 70, 80]


def _sorted_files(tmp_path: Path, days: int, row_group_rows: int) -> list[Path]:
    """Files sorted by customer whose customers overlap only in part."""
    rng = np.random.default_rng(7)
    files = []
    for day in range(days):
        ids = np.sort(rng.choice(5_000, size=2_000, replace=False)) + 10**6
        path = tmp_path / f"d{day}" / "part-0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"customer_id": ids}), path, row_group_size=row_group_rows)
        files.append(path)
    return files


@pytest.mark.parametrize(("shard_rows", "max_shards"), [(500, 32), (1_000, 3), (10_000, 32)])
def test_shards_from_statistics_cover_every_customer_once_in_even_parts(
    tmp_path, shard_rows, max_shards
):
    files = _sorted_files(tmp_path, days=3, row_group_rows=128)
    customers = pc.unique(
        pa.concat_arrays([pq.read_table(f)["customer_id"].combine_chunks() for f in files])
    ).to_numpy()

    # When the shards are cut from the files' row-group statistics alone
    shards = sharding._shards_from_statistics(files, "customer_id", shard_rows, max_shards)

    # Then they are as many as the in-memory split, each customer is in exactly one,
    # and no shard is off an even share by more than a row group's worth of customers
    assert len(shards) == len(
        sharding._shards_in_memory(files, "customer_id", shard_rows, max_shards)
    )
    counts = [int(((customers >= s["first"]) & (customers <= s["last"])).sum()) for s in shards]
    assert sum(counts) == len(customers)
    assert [s["index"] for s in shards] == list(range(len(shards)))
    even = len(customers) / len(shards)
    assert all(abs(count - even) <= 128 * 3 for count in counts)


def test_files_whose_statistics_cannot_bound_customers_are_split_in_memory(tmp_path):
    # Given a file that is not sorted by customer (row groups overlap)
    path = tmp_path / "part-0.parquet"
    ids = np.random.default_rng(3).permutation(1_000) + 10**6
    pq.write_table(pa.table({"customer_id": ids}), path, row_group_size=100)

    # Then statistics give no split, and the one in memory has equal parts
    assert sharding._shards_from_statistics([path], "customer_id", 250, 32) is None
    shards = sharding._shards_in_memory([path], "customer_id", 250, 32)
    assert [(s["first"], s["last"]) for s in shards] == [
        (10**6 + 250 * i, 10**6 + 250 * i + 249) for i in range(4)
    ]


@pytest.mark.parametrize(
    "ids",
    [
        np.array([1, 2, 3, 2**62, 2**63 - 2, 2**63 - 1]),
        np.r_[np.arange(1, 1_001), np.arange(2**63 - 1_000, 2**63 - 1) + 0, [2**63 - 1]],
        np.array([-(2**63), -5, 0, 2**63 - 1]),
    ],
    ids=["sparse-to-max", "both-ends-dense", "whole-range"],
)
def test_the_whole_int64_range_is_planned(tmp_path, ids):
    # Given a validated file (sorted by customer) whose ids reach int64's ends
    path = tmp_path / "part-0.parquet"
    pq.write_table(pa.table({"customer_id": pa.array(ids, pa.int64())}), path, row_group_size=64)

    # When shards are cut from its statistics, and in memory
    for shards in (
        sharding._shards_from_statistics([path], "customer_id", 100, 32),
        sharding._shards_in_memory([path], "customer_id", 100, 32),
    ):
        # Then the shards are in order, in range, and hold every customer exactly once
        assert shards[0]["first"] == ids.min() and shards[-1]["last"] == ids.max()
        for before, after in itertools.pairwise(shards):
            assert before["last"] < after["first"] <= after["last"]
        counts = [int(((ids >= s["first"]) & (ids <= s["last"])).sum()) for s in shards]
        assert sum(counts) == len(ids)


def _text_days(tmp_path: Path, days: int, row_group_rows: int) -> list[Path]:
    """Daily snapshots sorted by text ids of any length (some not ASCII): each day holds
    most of one customer base, and a few customers of its own."""
    rng = np.random.default_rng(5)
    base = np.array([f"{'cé'[n % 2]}{n}" for n in range(3_000)])
    files = []
    for day in range(days):
        held = base[rng.random(len(base)) < 0.95]
        ids = pa.array([*held, *(f"new-{day}-{n}" for n in range(50))]).sort()
        path = tmp_path / f"d{day}" / "part-0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"customer_id": ids}), path, row_group_size=row_group_rows)
        files.append(path)
    return files


def _held(shards: list[dict], ids: np.ndarray) -> list[np.ndarray]:
    """Which of `ids` each shard holds, by its range (`contracts.shard_range`)."""
    held = []
    for shard in shards:
        first, bound, included = contracts.shard_range(shard)
        below = ids <= bound if included else ids < bound
        held.append((ids >= first) & below)
    return held


@pytest.mark.parametrize(("shard_rows", "max_shards"), [(500, 32), (1_000, 3), (10_000, 32)])
def test_text_shards_from_statistics_cover_every_customer_once_in_even_parts(
    tmp_path, shard_rows, max_shards
):
    # Given daily files sorted by text ids, in row groups of 128
    files = _text_days(tmp_path, days=3, row_group_rows=128)
    tables = [pq.read_table(f)["customer_id"].to_numpy() for f in files]
    customers = np.unique(np.concatenate(tables))

    # When the shards are cut from the statistics and the ids at the cuts
    shards = sharding._text_shards_from_statistics(files, "customer_id", shard_rows, max_shards)

    # Then each customer is in exactly one shard, whichever file holds it
    held = _held(shards, customers)
    assert (np.sum(held, axis=0) == 1).all()
    assert [s["index"] for s in shards] == list(range(len(shards)))
    # And the largest day is cut in equal parts, which the other days' few customers leave
    # within a tenth of an even share of all customers
    largest = max(tables, key=len)
    assert len(shards) == min(max_shards, -(-len(largest) // shard_rows))
    parts = [int(mask.sum()) for mask in _held(shards, largest)]
    assert max(parts) - min(parts) <= 1
    even = len(customers) / len(shards)
    assert all(abs(int(mask.sum()) - even) <= even / 10 for mask in held)


def test_text_ids_whose_statistics_cannot_bound_them_are_split_in_memory(tmp_path):
    # Given a file of text ids that is not sorted (row groups overlap)
    path = tmp_path / "part-0.parquet"
    ids = [f"u{n}" for n in np.random.default_rng(3).permutation(1_000)]
    pq.write_table(pa.table({"customer_id": ids}), path, row_group_size=100)

    # Then statistics give no split, and the one in memory has equal parts of every id
    assert sharding._text_shards_from_statistics([path], "customer_id", 250, 32) is None
    shards = sharding._text_shards_in_memory([path], "customer_id", 250, 32)
    held = _held(shards, np.array(ids, dtype=object))
    assert [int(mask.sum()) for mask in held] == [250] * 4
    assert shards[0]["first"] == min(ids) and shards[-1]["last"] == max(ids)


def test_a_text_shard_ends_before_the_id_the_next_one_starts_with():
    # Given text ids, where no id comes right before another one ("a" < "a\x00" < "a0")
    shards = sharding._text_shards("a", ["m", "a", "zz", "m"], "zz")

    # Then each cut starts a shard once and ends the one before it, the last id included
    assert shards == [
        {"index": 0, "first": "a", "before": "m"},
        {"index": 1, "first": "m", "before": "zz"},
        {"index": 2, "first": "zz", "last": "zz"},
    ]
    ids = np.array(["a", "a\x00", "lzzz", "m", "m\x00", "z", "zz"], dtype=object)
    assert [mask.sum() for mask in _held(shards, ids)] == [3, 3, 1]
    assert json.loads(json.dumps(shards)) == shards  # ids cross XCom as JSON


def test_a_customer_with_the_greatest_id_is_scored(world, monkeypatch):
    # Given a night where one customer's id is int64's greatest value
    settings = world
    frame = synthetic.activity(settings.synthetic, DAY)
    frame.loc[frame.index[-1], "customer_id"] = 2**63 - 1
    _publish_day(settings, DAY, frame)
    monkeypatch.setenv("MLOPS_SCORING__SHARD_ROWS", "1000")

    # When the night is planned, scored and published
    plan = sharding.plan(load_settings(), DAY)
    for shard in plan.shards:
        publishing.score_shard(settings, plan, shard)
    publishing.publish(settings, plan)

    # Then that customer has a prediction, as every other one of the night does
    published = pq.read_table(publishing.partition(settings, publishing.PREDICTIONS, DAY))
    assert set(frame["customer_id"]) <= set(published["customer_id"].to_pylist())


def test_shadow_scoring_a_constant_challenger_reports_and_never_fails(world):
    # Given a challenger that predicts the same score for everyone (no split can be made)
    settings = world
    constant = registration.train_and_register(
        settings, labelled_frame(settings, DAY), {"n_estimators": 5, "min_child_weight": 10_000}
    )
    alias_moves.reject(settings, constant.version, "a degenerate model", "test")
    champion = sharding.plan(settings, DAY)
    for shard in champion.shards:
        publishing.score_shard(settings, champion, shard)
    publishing.publish(settings, champion)

    # When the night's shadow scoring runs
    result = shadowing.shadow_score(settings, champion)

    # Then it is scored, the undefined rank correlation is None, and the result is valid JSON
    assert result["status"] == "scored"
    assert result["rank_correlation"] is None
    assert result["rows_compared"] == settings.synthetic.customers
    json.dumps(result, allow_nan=False)


def test_predictions_are_those_published_before_the_reshape(world):
    # Given the world a partition was published from before the stage packages and the
    # declared encoding (`tests/fixtures/predictions_before_reshape.parquet`)
    plan = sharding.plan(world, DAY)

    # When the night is scored now
    for shard in plan.shards:
        publishing.score_shard(world, plan, shard)
    published = pq.read_table(publishing.publish(world, plan).path)

    # Then every prediction and its lineage are the same, but for the ids of this run
    before = pq.read_table(
        Path(__file__).parents[2] / "fixtures/predictions_before_reshape.parquet"
    )
    this_run = ["model_run_id", "scoring_run_id"]
    assert published.schema == before.schema
    assert published.drop_columns(this_run).equals(before.drop_columns(this_run))
