"""Feast: repository apply, the materialization window, and `materialize_window` vs stock."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from google.protobuf.json_format import MessageToDict

from pipelines import contracts
from pipelines.demo import synthetic
from pipelines.features import materialization, point_in_time
from pipelines.ingest import publish, validation
from pipelines.io import feast_store
from pipelines.settings import load_settings

DAYS = [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)]
CUSTOMERS = 300
VIEW = "customer_activity"


def settings_at(root):
    """Settings of a small world at `root`, read from the environment like the fixture's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_STATE_ROOT", str(root))
        patch.setenv("MLOPS_SYNTHETIC__CUSTOMERS", str(CUSTOMERS))
        return load_settings()


@pytest.fixture(scope="module")
def published_lake(tmp_path_factory):
    """A lake with three generated days that passed the gate and were published."""
    settings = settings_at(tmp_path_factory.mktemp("published"))
    for day in DAYS:
        synthetic.land_day(settings, day)
        validation.validate_partition(settings, day)
        publish.publish_partition(settings, day)
    return settings.lake_root


@pytest.fixture
def lake_copy(published_lake, tmp_path):
    """Settings of a fresh state root holding a copy of the published lake."""

    def copy(name):
        settings = settings_at(tmp_path / name)
        shutil.copytree(published_lake, settings.lake_root)
        return settings

    return copy


def online_rows(settings):
    """Every row of the view's table in the sqlite online store, in key order."""
    path = settings.feast_root / "online_store.db"
    with sqlite3.connect(path) as connection:
        return connection.execute(
            f"SELECT * FROM {settings.feast_project}_{VIEW} ORDER BY entity_key, feature_name"
        ).fetchall()


def online_features(store, customer_ids):
    service = store.get_feature_service("churn_model_v1")
    rows = [{"customer_id": customer_id} for customer_id in customer_ids]
    return store.get_online_features(features=service, entity_rows=rows).to_dict()


def daily_windows(settings):
    return [
        materialization.materialization_window(settings, *contracts.night_interval(day))
        for day in DAYS
    ]


def materialized_every_night(settings):
    """Every daily window materialized in order: the store, the windows, the online rows."""
    store = feast_store.apply_repo(settings)
    windows = daily_windows(settings)
    for start, end in windows:
        materialization.materialize_window(settings, start, end, store=store)
    return store, windows, online_rows(settings)


# Repository apply ----------------------------------------------------------------------------


def _without_meta(message):
    """A proto as a dict, every `meta` (created/updated timestamps) dropped, recursively."""

    def drop(value):
        if isinstance(value, dict):
            return {key: drop(item) for key, item in value.items() if key != "meta"}
        if isinstance(value, list):
            return [drop(item) for item in value]
        return value

    return drop(MessageToDict(message))


def _registered(store):
    return {
        "entities": [_without_meta(e.to_proto()) for e in store.list_entities()],
        "sources": [_without_meta(s.to_proto()) for s in store.list_data_sources()],
        "views": [_without_meta(fv.to_proto()) for fv in store.list_feature_views()],
        "services": [_without_meta(fs.to_proto()) for fs in store.list_feature_services()],
    }


def test_apply_repo_is_idempotent(settings):
    repo_files = sorted(
        p.relative_to(settings.feature_repo)
        for p in settings.feature_repo.rglob("*")
        if "__pycache__" not in p.parts
    )

    store = feast_store.apply_repo(settings)
    first = _registered(store)
    created = store.get_feature_view(VIEW).created_timestamp
    store = feast_store.apply_repo(settings)
    second = _registered(store)

    assert first == second
    assert [e["spec"]["name"] for e in first["entities"]] == ["customer"]
    assert [s["name"] for s in first["sources"]] == ["activity_validated"]
    assert [v["spec"]["name"] for v in first["views"]] == [VIEW]
    assert [f["spec"]["name"] for f in first["services"]] == ["churn_model_v1"]
    # The second apply updated the view in place; it did not re-create it.
    assert store.get_feature_view(VIEW).created_timestamp == created
    # Nothing was written into the committed repository.
    assert repo_files == sorted(
        p.relative_to(settings.feature_repo)
        for p in settings.feature_repo.rglob("*")
        if "__pycache__" not in p.parts
    )


def test_reapplying_keeps_what_was_materialized(lake_copy):
    # Given a window was materialized
    settings = lake_copy("reapply")
    store = feast_store.apply_repo(settings)
    window = daily_windows(settings)[0]
    materialization.materialize_window(settings, *window, store=store)
    before = online_rows(settings)

    # When the repository is applied again (every DAG run does)
    store = feast_store.apply_repo(settings)

    # Then the online store and the recorded interval survive
    assert online_rows(settings) == before
    assert store.get_feature_view(VIEW).materialization_intervals == [window]


def test_apply_repo_writes_its_state_under_the_state_root(settings):
    store = feast_store.apply_repo(settings)

    config_file = settings.state_root / "feast" / "feature_store.yaml"
    config = yaml.safe_load(config_file.read_text())
    assert config == feast_store.repo_config_dict(settings)
    assert config["project"] == settings.project.name == "demo"
    assert config["registry"]["path"] == str(settings.feast_root / "registry.db")
    assert config["online_store"] == {
        "type": "sqlite",
        "path": str(settings.feast_root / "online_store.db"),
    }
    assert (settings.feast_root / "registry.db").is_file()
    # The view reads the validated zone of this state root, nothing else.
    source = store.get_feature_view(VIEW).batch_source
    assert source.path == str(settings.validated_root / "activity")


def test_production_profile_uses_sql_registry_and_redis(settings, monkeypatch):
    monkeypatch.setenv("MLOPS_PROFILE", "production")

    config = feast_store.repo_config_dict(load_settings())

    assert config["registry"]["registry_type"] == "sql"
    assert config["registry"]["path"] == settings.feast.registry_sql_url
    assert config["online_store"] == {
        "type": "redis",
        "connection_string": settings.feast.redis_connection,
    }


# Windows -------------------------------------------------------------------------------------


def test_materialization_window_subtracts_the_overlap(settings, monkeypatch):
    start, end = contracts.night_interval(date(2026, 1, 2))
    assert (start, end) == (datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC))

    assert materialization.materialization_window(settings, start, end) == (
        start - settings.feast.materialize_overlap,
        end,
    )
    assert materialization.materialization_window(settings, start, end)[0] == datetime(
        2026, 1, 1, 23, tzinfo=UTC
    )

    monkeypatch.setenv("MLOPS_FEAST__MATERIALIZE_OVERLAP", "PT6H")
    wider = load_settings()
    assert materialization.materialization_window(wider, start, end) == (
        datetime(2026, 1, 1, 18, tzinfo=UTC),
        end,
    )


# latest_rows ---------------------------------------------------------------------------------


def _ts(day, hour, minute=0, microsecond=0):
    return datetime(2026, 1, day, hour, minute, 0, microsecond, tzinfo=UTC)


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.int64()),
            "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "sessions": pa.array([r[2] for r in rows], pa.int64()),
            "plan": pa.array(["basic"] * len(rows), pa.string()),
        }
    )
    pq.write_table(table, path)
    return path


@pytest.fixture
def two_days(tmp_path):
    start, end = _ts(1, 12), _ts(2, 12)
    day1 = _write(
        tmp_path / "date=2026-01-01" / "part-0.parquet",
        [
            (1, _ts(1, 6), 10),  # before the window
            (1, _ts(1, 13), 11),
            (2, start, 20),  # exactly at start: inside
            (3, start - timedelta(microseconds=1), 30),  # just before start: outside
            (4, _ts(1, 8), 40),  # only outside
        ],
    )
    day2 = _write(
        tmp_path / "date=2026-01-02" / "part-0.parquet",
        [
            (1, _ts(2, 9), 12),  # latest of customer 1
            (2, _ts(2, 1), 21),  # latest of customer 2
            (3, end, 31),  # exactly at end: inside
            (5, end + timedelta(microseconds=1), 50),  # just after end: outside
            (2, _ts(1, 23), 19),  # out of order in the file, older than 21
        ],
    )
    return [day1, day2], start, end


def test_latest_rows_picks_the_latest_row_per_entity_within_inclusive_bounds(two_days):
    files, start, end = two_days

    latest = point_in_time.latest_rows(files, _window(start, end), ["sessions", "plan"])

    assert latest.column_names == ["customer_id", "event_timestamp", "sessions", "plan"]
    assert latest.to_pylist() == [
        {"customer_id": 1, "event_timestamp": _ts(2, 9), "sessions": 12, "plan": "basic"},
        {"customer_id": 2, "event_timestamp": _ts(2, 1), "sessions": 21, "plan": "basic"},
        {"customer_id": 3, "event_timestamp": end, "sessions": 31, "plan": "basic"},
    ]


def test_latest_rows_can_return_text_dictionary_encoded(two_days):
    files, start, end = two_days
    columns = ["sessions", "plan"]
    plain = point_in_time.latest_rows(files, _window(start, end), columns)

    encoded = point_in_time.latest_rows(
        files, _window(start, end), columns, text_as_dictionary=True
    )

    assert encoded.schema.field("plan").type == pa.dictionary(pa.int32(), pa.string())
    assert encoded.to_pylist() == plain.to_pylist()


def _window(start, end) -> point_in_time.Window:
    return point_in_time.Window("customer_id", "event_timestamp", start, end)


def test_latest_rows_of_a_window_holding_one_row(two_days):
    files, _, _ = two_days
    at = _ts(1, 8)

    latest = point_in_time.latest_rows(files, _window(at, at), ["sessions"])

    assert latest.to_pylist() == [{"customer_id": 4, "event_timestamp": at, "sessions": 40}]


def test_latest_rows_of_an_empty_window_or_no_files(two_days):
    files, _, _ = two_days
    empty = point_in_time.latest_rows(files, _window(_ts(5, 0), _ts(6, 0)), ["sessions"])
    nothing = point_in_time.latest_rows([], _window(*two_days[1:]), ["sessions"])

    assert empty.num_rows == 0
    assert nothing.num_rows == 0


# materialize_window vs stock materialize -----------------------------------------------------


def test_materialize_window_matches_stock_materialize(lake_copy):
    # Given two state roots holding the same published lake, each with the repo applied
    ours_settings, stock_settings = lake_copy("ours"), lake_copy("stock")
    ours = feast_store.apply_repo(ours_settings)
    stock = feast_store.apply_repo(stock_settings)
    windows = daily_windows(ours_settings)
    assert windows == daily_windows(stock_settings)

    for start, end in windows:
        # When each day's window is materialized, ours on one side and stock on the other
        result = materialization.materialize_window(ours_settings, start, end, store=ours)
        stock.materialize(start, end, [VIEW])

        # Then the online stores hold exactly the same rows after every window
        assert result.entities_written == CUSTOMERS
        assert online_rows(ours_settings) == online_rows(stock_settings)

    assert len(online_rows(ours_settings)) == CUSTOMERS * 9
    # And the feature service serves the same values (unknown customers included)
    customer_ids = [100_001, 100_002, 100_150, 100_300, 999]
    served = online_features(ours, customer_ids)
    assert served == online_features(stock, customer_ids)
    # And those values are the last published day's, not an older one's
    last_day = pq.read_table(
        ours_settings.validated_root / "activity" / "date=2026-01-03" / "part-0.parquet"
    ).to_pandas()
    expected = last_day.set_index("customer_id").loc[100_150]
    position = customer_ids.index(100_150)
    for name in ("plan", "region", "sessions", "usage_minutes", "tenure_days", "monthly_charge"):
        assert served[name][position] == expected[name], name
    assert all(served[name][-1] is None for name in served if name != "customer_id")
    # And both registries recorded the same materialization intervals
    intervals = ours.get_feature_view(VIEW).materialization_intervals
    assert intervals == stock.get_feature_view(VIEW).materialization_intervals
    assert intervals == windows


def test_rerunning_a_window_is_harmless(lake_copy):
    # Given all daily windows were materialized
    settings = lake_copy("rerun")
    store, windows, before = materialized_every_night(settings)

    # When the last window runs again (a retried task)
    again = materialization.materialize_window(settings, *windows[-1], store=store)

    # Then the online store's contents are identical
    assert again.entities_written == CUSTOMERS
    assert online_rows(settings) == before
    assert len(before) == CUSTOMERS * 9


def test_an_older_night_run_after_newer_ones_keeps_the_newest_values_online(lake_copy):
    # Given all daily windows were materialized, the last day's values online
    settings = lake_copy("out-of-order")
    store, windows, before = materialized_every_night(settings)

    # When the first night runs again (a backfill, or a rerun of a past night)
    again = materialization.materialize_window(settings, *windows[0], store=store)

    # Then nothing older replaces the newest values: the online store is unchanged
    assert again.entities_written == 0 and again.rows_read == CUSTOMERS
    assert online_rows(settings) == before
    # And entities the store had never seen are written
    with sqlite3.connect(settings.feast_root / "online_store.db") as connection:
        table = f"{settings.feast_project}_{VIEW}"
        keys = [row[0] for row in connection.execute(f'select distinct entity_key from "{table}"')]
        connection.execute(f'delete from "{table}" where entity_key = ?', (keys[0],))
    refilled = materialization.materialize_window(settings, *windows[0], store=store)
    assert refilled.entities_written == 1


def test_one_day_window_reads_only_the_partitions_of_that_window(lake_copy):
    # Given three published days
    settings = lake_copy("window")
    store = feast_store.apply_repo(settings)

    # When the first day's window is materialized (its overlap reaches into Dec 31)
    start, end = materialization.materialization_window(
        settings, *contracts.night_interval(DAYS[0])
    )
    result = materialization.materialize_window(settings, start, end, store=store)

    # Then only the partitions that can hold rows of [start, end] were read: the day itself
    # and the next one (its midnight is the inclusive end); Dec 31 does not exist, Jan 3 is out
    assert result.partitions == ["date=2026-01-01", "date=2026-01-02"]
    assert result.feature_view == VIEW
    assert (result.start, result.end) == (start.isoformat(), end.isoformat())
    assert result.rows_read == result.entities_written == CUSTOMERS


def test_window_inside_one_day_reads_one_partition_and_writes_its_rows(lake_copy):
    # Given three published days
    settings = lake_copy("inside")
    store = feast_store.apply_repo(settings)
    start, end = _ts(2, 6), _ts(2, 12)

    # When a window inside Jan 2 is materialized
    result = materialization.materialize_window(settings, start, end, store=store)

    # Then only Jan 2 is read, and only its customers active in the window are written
    assert result.partitions == ["date=2026-01-02"]
    day = pq.read_table(
        settings.validated_root / "activity" / "date=2026-01-02" / "part-0.parquet"
    ).to_pandas()
    inside = day[(day["event_timestamp"] >= start) & (day["event_timestamp"] <= end)]
    assert 0 < result.entities_written == len(inside) < CUSTOMERS
    assert len(online_rows(settings)) == len(inside) * 9
