"""Bulk online writes: byte for byte what Feast's own write path stores, on SQLite and Redis."""

from __future__ import annotations

import itertools
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.types import Bool, Float32, Float64, Int64, String, UnixTimestamp
from google.protobuf.timestamp_pb2 import Timestamp

from pipelines.io import online_store
from tests.integration.conftest import (  # noqa: F401 (redis_server: a fixture)
    delete_redis_keys,
    redis_server,
    unique_name,
)

VIEW = "typed"
START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
ROWS = 60
STAMP = pa.timestamp("us", tz="UTC")
FEATURES = [
    Field(name="count", dtype=Int64),  # holds nulls: Feast reads such a column as doubles
    Field(name="big", dtype=Int64),
    Field(name="amount", dtype=Float64),
    Field(name="label", dtype=String),
    Field(name="flag", dtype=Bool),
    Field(name="seen", dtype=UnixTimestamp),
]
EDGES = {
    "count": [0, 1, -1, 127, 128, 300, -300, 2**53, -(2**53), None],
    "big": [2**63 - 1, -(2**63), 0, 1 << 35, -5, 150, 16_383, 16_384],
    "amount": [
        0.0,
        -0.0,
        1.5,
        0.1,
        1e16,
        1e15,
        1e-5,
        5e-324,
        123456789.125,
        None,
        float("nan"),
        float("inf"),
        float("-inf"),
    ],
    "label": ["", "plain", "é ü", "it's", '"quoted"', "x" * 200, None, "日本"],
    "flag": [True, False, None],
    "seen": [
        datetime(2026, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        None,
        datetime(2200, 1, 1, tzinfo=UTC),
        datetime(1900, 1, 1, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    ],
}
ARROW_TYPES = {
    "count": pa.int64(),
    "big": pa.int64(),
    "amount": pa.float64(),
    "label": pa.string(),
    "flag": pa.bool_(),
    "seen": STAMP,
}
# Entity ids (the extremes among them) and event times inside [START, END], both ends included.
IDS = [-(2**63), 2**63 - 1, -1, 0, *range(1, ROWS - 3)]
EVENTS = [START, END, *(START + timedelta(minutes=7 * n, microseconds=n) for n in range(ROWS - 2))]


def typed_table(ids=IDS, events=EVENTS, columns=EDGES) -> pa.Table:
    """One row per entity; each feature cycles through its edge values (nulls among them)."""
    data = {
        "customer_id": pa.array(ids, pa.int64()),
        "event_timestamp": pa.array(events, STAMP),
    }
    for name, values in columns.items():
        cycled = list(itertools.islice(itertools.cycle(values), len(ids)))
        data[name] = pa.array(cycled, ARROW_TYPES.get(name))
    return pa.table(data)


# --------------------------------------------------------------------------- stores


def feature_view(source_path: Path, fields=FEATURES) -> tuple[Entity, FileSource, FeatureView]:
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    source = FileSource(
        name="typed_source", path=str(source_path), timestamp_field="event_timestamp"
    )
    view = FeatureView(
        name=VIEW,
        entities=[customer],
        ttl=timedelta(days=365_000),
        schema=fields,
        source=source,
        online=True,
    )
    return customer, source, view


class Online:
    """Stores of one online store type, each with its own project, and their raw records."""

    def __init__(self, kind: str, root: Path, redis_url: str | None) -> None:
        self.kind, self.root, self.redis_url = kind, root, redis_url
        self.projects: list[str] = []

    def store(self, name: str, fields=FEATURES, **options) -> tuple[FeatureStore, FeatureView]:
        """A store named `name` (its project), the typed view applied, reading `name`.parquet."""
        project = unique_name(name)
        self.projects.append(project)
        root = self.root / project
        root.mkdir()
        config = RepoConfig(
            repo_path=root,
            project=project,
            provider="local",
            registry={"registry_type": "file", "path": str(root / "registry.db")},
            online_store=self._online_config(root) | options,
            offline_store={"type": "file"},
            entity_key_serialization_version=3,
        )
        store = FeatureStore(repo_path=str(root), config=config)
        store.apply(list(feature_view(self.root / f"{name}.parquet", fields)))
        return store, store.get_feature_view(VIEW)

    def _online_config(self, root: Path) -> dict:
        if self.kind == "sqlite":
            return {"type": "sqlite", "path": str(root / "online.db")}
        host_port = self.redis_url.removeprefix("redis://").split("/")[0]
        return {"type": "redis", "connection_string": host_port}

    def records(self, store: FeatureStore) -> list | dict:
        """Everything the store holds for the view, raw: SQLite rows, or Redis hashes (each
        key without its project, and whether it expires)."""
        project = store.project
        if self.kind == "sqlite":
            with sqlite3.connect(self.root / project / "online.db") as connection:
                return connection.execute(
                    f'SELECT * FROM "{project}_{VIEW}" ORDER BY entity_key, feature_name'
                ).fetchall()
        import redis

        client = redis.Redis.from_url(self.redis_url)
        suffix = project.encode()
        return {
            key.removesuffix(suffix): (client.hgetall(key), client.ttl(key) > 0)
            for key in client.scan_iter(b"*" + suffix)
        }

    def clean(self) -> None:
        for project in self.projects if self.kind == "redis" else []:
            delete_redis_keys(self.redis_url, b"*" + project.encode())


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def online(request, tmp_path):
    """Feast stores of each online store type (Redis: its own keys, removed afterwards)."""
    url = request.getfixturevalue("redis_server") if request.param == "redis" else None
    stores = Online(request.param, tmp_path, url)
    yield stores
    stores.clean()


def _stock_and_ours(online, **options):
    """Two fresh stores of the same type: one Feast writes, the other this module."""
    return online.store("stock", **options), online.store("ours", **options)


# --------------------------------------------------------------------------- the records


def test_rows_are_stored_byte_for_byte_as_write_to_online_store_stores_them(online):
    (stock, _), (ours, our_view) = _stock_and_ours(online)
    table = typed_table()

    stock.write_to_online_store(VIEW, table.to_pandas())
    online_store.write_rows(ours, our_view, table)

    assert online.records(ours) == online.records(stock)
    assert len(online.records(ours)) == ROWS * (len(FEATURES) if online.kind == "sqlite" else 1)


def test_rows_are_stored_byte_for_byte_as_feast_materialize_stores_them(online):
    # Given the table as the file source of the stock store
    (stock, _), (ours, our_view) = _stock_and_ours(online)
    table = typed_table()
    pq.write_table(table, online.root / "stock.parquet")

    # When Feast materializes the window, and this module writes the same rows
    stock.materialize(START, END, [VIEW])
    online_store.write_rows(ours, our_view, table)

    # Then both stores hold the same bytes
    assert online.records(ours) == online.records(stock)


def test_an_entirely_null_feature_is_stored_as_feast_materialize_stores_it(online):
    (stock, _), (ours, our_view) = _stock_and_ours(online)
    nulls = {name: [None] for name in EDGES}
    table = typed_table(columns=nulls | {"big": [7]})
    pq.write_table(table, online.root / "stock.parquet")

    stock.materialize(START, END, [VIEW])
    online_store.write_rows(ours, our_view, table)

    assert online.records(ours) == online.records(stock)


def test_feast_reads_back_what_was_written(online):
    store, view = online.store("ours")
    table = typed_table()

    online_store.write_rows(store, view, table)

    served = store.get_online_features(
        features=[f"{VIEW}:{field.name}" for field in FEATURES],
        entity_rows=[{"customer_id": i} for i in [*IDS, 123_456_789]],
    ).to_dict()
    expected = _as_served(table)
    for name in EDGES:
        assert served[name][:-1] == expected[name], name
        assert served[name][-1] is None  # an entity never written


def _as_served(table: pa.Table) -> dict[str, list]:
    """What Feast serves for the table's values: NaN is stored as null, timestamps in seconds."""
    served = {name: table.column(name).to_pylist() for name in EDGES}
    served["amount"] = [None if v is None or v != v else v for v in served["amount"]]
    served["seen"] = [None if t is None else t.replace(microsecond=0) for t in served["seen"]]
    return served


def test_writing_again_keeps_feasts_rule_for_older_equal_and_newer_rows(online):
    # Given both stores hold a first write, with an expiry on Redis
    options = {"key_ttl_seconds": 3600} if online.kind == "redis" else {}
    (stock, _), (ours, our_view) = _stock_and_ours(online, **options)
    first = typed_table()
    stock.write_to_online_store(VIEW, first.to_pandas())
    online_store.write_rows(ours, our_view, first)

    # When rows come again, each older, as old, or newer than the stored one (microseconds
    # apart), and for an entity stored before the epoch, older still, beside new entities
    shifts = [timedelta(microseconds=s) for s in (-1, 0, 1, -3_600_000_000, 86_400_000_000)]
    events = [e + shifts[n % len(shifts)] for n, e in enumerate(EVENTS)]
    before_epoch = datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)
    ids = [*IDS, 10_000, 10_001]
    events = [*events, before_epoch, before_epoch]
    second = typed_table(ids, events, {k: list(reversed(v)) for k, v in EDGES.items()})
    third = typed_table([10_000], [before_epoch - timedelta(days=1)])
    for table in (second, third):
        stock.write_to_online_store(VIEW, table.to_pandas())
        online_store.write_rows(ours, our_view, table)

    # Then the stores still hold the same bytes
    assert online.records(ours) == online.records(stock)


def test_a_feature_view_of_other_types_is_written_through_feast(online):
    fields = [Field(name="ratio", dtype=Float32)]
    (stock, _), (ours, our_view) = (online.store(n, fields=fields) for n in ("stock", "ours"))
    ratios = pa.array(list(itertools.islice(itertools.cycle([0.5, None]), ROWS)), pa.float32())
    table = typed_table(columns={}).append_column("ratio", ratios)

    stock.write_to_online_store(VIEW, table.to_pandas())
    online_store.write_rows(ours, our_view, table)

    assert online.records(ours) == online.records(stock)


# --------------------------------------------------------------------------- SQLite


@pytest.fixture
def new_york(monkeypatch):
    """The process's local time zone is New York's for the test."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_sqlite_event_times_follow_feast_in_a_local_time_zone_other_than_utc(tmp_path, new_york):
    # Feast's SQLite store reads a naive UTC event time in the machine's local zone
    stores = Online("sqlite", tmp_path, None)
    (stock, _), (ours, our_view) = stores.store("stock"), stores.store("ours")
    summer = [e + timedelta(days=180) for e in EVENTS]

    for table in (typed_table(), typed_table(events=summer)):
        stock.write_to_online_store(VIEW, table.to_pandas())
        online_store.write_rows(ours, our_view, table)
        assert stores.records(ours) == stores.records(stock)


def test_rows_come_in_the_order_sqlite_keeps_their_keys(tmp_path):
    store, view = Online("sqlite", tmp_path, None).store("ours")

    ordered = online_store.key_ordered(store, view, typed_table())

    ids = ordered.column("customer_id").to_pylist()
    keys = [serialize_entity_key(_entity_key(i)) for i in ids]
    assert keys == sorted(keys)
    original = typed_table()
    assert dict(zip(ids, ordered.column("label").to_pylist(), strict=True)) == dict(
        zip(IDS, original.column("label").to_pylist(), strict=True)
    )


# --------------------------------------------------------------------------- Redis


@pytest.mark.integration
def test_redis_without_the_timestamp_check_writes_every_row_as_feast_does(tmp_path, request):
    stores = Online("redis", tmp_path, request.getfixturevalue("redis_server"))
    try:
        (stock, _), (ours, our_view) = _stock_and_ours(stores, skip_dedup=True)
        reversed_edges = {name: list(reversed(values)) for name, values in EDGES.items()}
        older = typed_table(events=[e - timedelta(days=1) for e in EVENTS], columns=reversed_edges)
        for table in (typed_table(), older):
            stock.write_to_online_store(VIEW, table.to_pandas())
            online_store.write_rows(ours, our_view, table)

        assert stores.records(ours) == stores.records(stock)
    finally:
        stores.clean()


@pytest.mark.integration
def test_stored_timestamps_serialized_otherwise_are_read_as_protobuf_reads_them(tmp_path, request):
    import redis
    from google.protobuf.internal.encoder import _VarintBytes

    redis_url = request.getfixturevalue("redis_server")
    stores = Online("redis", tmp_path, redis_url)
    try:
        (stock, _), (ours, our_view) = _stock_and_ours(stores)
        # Newer than the first row (its fields reversed), older than the second (seconds
        # twice: the last one counts), as another writer might have stored them
        newer = int(EVENTS[0].timestamp()) + 1
        older = int(EVENTS[1].timestamp()) - 1
        stamps = {
            IDS[0]: b"\x10\x05\x08" + _VarintBytes(newer),
            IDS[1]: b"\x08" + _VarintBytes(newer) + b"\x08" + _VarintBytes(older),
        }
        client = redis.Redis.from_url(redis_url)
        for store in (stock, ours):
            for entity, stamp in stamps.items():
                key = serialize_entity_key(_entity_key(entity)) + store.project.encode()
                client.hset(key, f"_ts:{VIEW}", stamp)

        stock.write_to_online_store(VIEW, typed_table().to_pandas())
        online_store.write_rows(ours, our_view, typed_table())

        records = stores.records(ours)
        assert records == stores.records(stock)
        first, second = (serialize_entity_key(_entity_key(i)) for i in IDS[:2])
        assert len(records[first][0]) == 1 and len(records[second][0]) == 1 + len(FEATURES)
    finally:
        stores.clean()


@pytest.mark.integration
def test_a_redis_error_is_raised_and_the_client_stays_usable(tmp_path, request):
    import redis

    redis_url = request.getfixturevalue("redis_server")
    stores = Online("redis", tmp_path, redis_url)
    try:
        store, view = stores.store("ours")
        table = typed_table()
        online_store.write_rows(store, view, table.slice(1))
        # A key of the view holding a string, not a hash
        key = serialize_entity_key(_entity_key(IDS[0])) + store.project.encode()
        redis.Redis.from_url(redis_url).set(key, b"not a hash")

        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            online_store.write_rows(store, view, table)

        served = store.get_online_features(
            features=[f"{VIEW}:big"], entity_rows=[{"customer_id": IDS[1]}]
        ).to_dict()
        assert served["big"] == [table.column("big")[1].as_py()]
    finally:
        stores.clean()


# --------------------------------------------------------------------------- encoding


def _entity_key(value: int) -> EntityKey:
    return EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=value)])


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("count", ValueType.INT64),
        ("big", ValueType.INT64),
        ("amount", ValueType.DOUBLE),
        ("label", ValueType.STRING),
        ("flag", ValueType.BOOL),
        ("seen", ValueType.UNIX_TIMESTAMP),
    ],
)
def test_values_serialize_as_feasts_protos(name, kind):
    column = typed_table().column(name).combine_chunks()

    ours = online_store.serialized_values(column, kind.name).to_pylist()

    protos = python_values_to_proto_values(column.to_numpy(zero_copy_only=False), kind)
    assert ours == [proto.SerializeToString() for proto in protos]


def test_entity_keys_serialize_as_feasts_version_3(tmp_path):
    _, view = Online("sqlite", tmp_path, None).store("ours")

    rows = online_store.online_rows(view, typed_table())

    assert rows.entity_keys.to_pylist() == [serialize_entity_key(_entity_key(i)) for i in IDS]


def test_event_times_serialize_as_protobuf_timestamps():
    micros = np.array([0, 1, -1, 1_767_225_600_123_456, -1_500_000, 10**6], np.int64)
    seconds, fraction = np.divmod(micros, 10**6)

    ours = online_store._timestamp_protos(seconds, fraction * 1000).to_pylist()

    expected = []
    for micro in micros.tolist():
        stamp = Timestamp()
        stamp.FromDatetime(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micro))
        expected.append(stamp.SerializeToString())
    assert ours == expected


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda t: t.drop(["label"]), r"lack column\(s\) \['label'\]"),
        (lambda t: t.set_column(0, "customer_id", pa.array([1] * ROWS)), "repeats an entity"),
        (
            lambda t: t.set_column(0, "customer_id", pa.array([None, *IDS[1:]], pa.int64())),
            "holds nulls",
        ),
        (lambda t: t.set_column(1, "event_timestamp", pa.array([None] * ROWS, STAMP)), "nulls"),
        (
            lambda t: t.set_column(5, "label", pa.array(range(ROWS))),
            "'label' holds int64, which is not a Feast STRING",
        ),
    ],
)
def test_bad_rows_are_refused_with_a_clear_error(tmp_path, change, error):
    store, view = Online("sqlite", tmp_path, None).store("ours")

    with pytest.raises(ValueError, match=error):
        online_store.write_rows(store, view, change(typed_table()))
