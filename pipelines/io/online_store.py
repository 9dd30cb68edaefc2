"""Bulk writes into Feast's online store: the records Feast's own write path stores, built
a whole column at a time.

Feast's write path (`FeatureStore.write_to_online_store`, and materialization) builds a
`ValueProto` object for every value and runs one statement per value on SQLite, queues
commands one entity at a time on Redis; on a night of 100k customers that is most of
materialization's time. `write_rows` builds the very same records with numpy and pyarrow
(entity keys as `serialize_entity_key` version 3 serializes them, values in the `ValueProto`
wire format, event timestamps as each store keeps them) and writes them in bulk: one
transaction of `executemany` on SQLite; on Redis one pipeline of `HGET` for the stored event
timestamps, then one of `HSET` (and `EXPIRE`), with Feast's rule that a row no newer than the
stored one is skipped. Feast's `get_online_features` reads them as it reads its own.

Other online stores, and views this module does not encode (other value types, several join
keys, field mappings, created timestamps), go through `store.write_to_online_store`.

Where Feast's two paths differ, this follows `FeatureStore.materialize`: rows whose features
are all null are written (`write_to_online_store` drops such a frame). And an int64 column
holding nulls is stored exact, where Feast reads it as doubles (rounded beyond 2**53).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The `Value` oneof field of each value type: (field number << 3) | wire type.
_TAGS = {"STRING": 0x12, "INT64": 0x20, "DOUBLE": 0x29, "BOOL": 0x38, "UNIX_TIMESTAMP": 0x40}
_ACCEPTS: dict[str, Callable[[pa.DataType], bool]] = {
    "STRING": lambda kind: pa.types.is_string(kind) or pa.types.is_large_string(kind),
    "INT64": pa.types.is_integer,
    "DOUBLE": lambda kind: pa.types.is_floating(kind) or pa.types.is_integer(kind),
    "BOOL": pa.types.is_boolean,
    "UNIX_TIMESTAMP": pa.types.is_timestamp,
}
_NULL_TIMESTAMP = np.iinfo(np.int64).min  # what Feast stores for a null timestamp (NaT)
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_VARINT_BYTES = 10
_SHIFTS = np.arange(_VARINT_BYTES, dtype=np.uint64) * np.uint64(7)
_VARINT_LONGER = np.uint64(1) << _SHIFTS[1:]  # the least value of each length past one byte
_READ_BYTES = 1 << 20
_SLICE_ROWS = 4_096  # Redis commands built (and sent) at a time


@dataclass(frozen=True)
class OnlineRows:
    """Rows of a feature view as Feast's online store holds them, a column per field."""

    entity_keys: pa.Array  # each row's `serialize_entity_key`
    event_micros: np.ndarray  # event times, microseconds since the epoch (floored)
    features: tuple[str, ...]
    kinds: tuple[str, ...]  # each feature's Feast value type name
    columns: tuple[pa.Array, ...]  # each feature's values, as encoded
    values: tuple[pa.Array, ...]  # each feature's serialized `ValueProto`s


def write_rows(store: Any, view: Any, rows: pa.Table) -> None:
    """Write `rows` (one per entity: its join key, event timestamp and the view's features)
    into the view's online table, as `store.write_to_online_store` would store them."""
    writer = _bulk_writer(store, view)
    if writer is None:
        store.write_to_online_store(view.name, rows.to_pandas())
    elif rows.num_rows:
        writer(store, view, online_rows(view, rows))


def key_ordered(store: Any, view: Any, rows: pa.Table) -> pa.Table:
    """The rows in the order SQLite keeps their entity keys in (as they are elsewhere): written
    in slices, each slice then holds neighbouring keys, and the table's indexes take it as a
    run of pages rather than scattered over the whole table."""
    if not rows.num_rows or _bulk_writer(store, view) is not _write_sqlite:
        return rows
    ids = _entity_ids(rows, view.entity_columns[0].name)
    # The keys share their header; their last eight bytes, the little-endian id, compare as
    # the same bytes read as a big-endian unsigned integer.
    return rows.take(np.argsort(ids.astype("<i8").view(">u8"), kind="stable"))


def _encodable(view: Any) -> bool:
    """Whether this module builds the view's records: one int64 join key, the value types
    of `_TAGS`, no field mapping, no created timestamps."""
    source = view.batch_source
    return (
        len(view.entity_columns) == 1
        and view.entity_columns[0].dtype.to_value_type().name == "INT64"
        and all(field.dtype.to_value_type().name in _TAGS for field in view.features)
        and not source.field_mapping
        and not source.created_timestamp_column
    )


def _bulk_writer(store: Any, view: Any) -> Callable[[Any, Any, OnlineRows], None] | None:
    """The bulk writer of the store's online store type for this view, if there is one."""
    config = store.config
    online = config.online_store
    if config.entity_key_serialization_version != 3 or not _encodable(view):
        return None
    if online.type == "sqlite" and not (
        online.vector_enabled or getattr(online, "enable_openai_compatible_store", False)
    ):
        return _write_sqlite
    if online.type == "redis" and online.redis_type != "redis_cluster":
        return _write_redis
    return None


# --------------------------------------------------------------------------- encoding


def online_rows(view: Any, rows: pa.Table) -> OnlineRows:
    """The records Feast's online store holds for `rows` of the view (one row per entity)."""
    entity = view.entity_columns[0].name
    timestamp = view.batch_source.timestamp_field
    features = tuple(field.name for field in view.features)
    missing = [name for name in (entity, timestamp, *features) if name not in rows.column_names]
    if missing:
        raise ValueError(f"rows for feature view {view.name!r} lack column(s) {missing}")
    kinds = tuple(field.dtype.to_value_type().name for field in view.features)
    columns = tuple(_column(rows, name, kind) for name, kind in zip(features, kinds, strict=True))
    return OnlineRows(
        entity_keys=_entity_keys(_entity_ids(rows, entity), entity),
        event_micros=_event_micros(rows, timestamp),
        features=features,
        kinds=kinds,
        columns=columns,
        values=tuple(serialized_values(c, k) for c, k in zip(columns, kinds, strict=True)),
    )


def _column(rows: pa.Table, name: str, kind: str) -> pa.Array:
    """A feature column in the type its values are encoded from; an error if it cannot be."""
    column = rows.column(name)
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if not _ACCEPTS[kind](column.type):
        raise ValueError(f"column {name!r} holds {column.type}, which is not a Feast {kind}")
    target = {"STRING": pa.string(), "INT64": pa.int64(), "DOUBLE": pa.float64()}.get(kind)
    if target is not None:
        # Integers become doubles as Feast stores them: rounded to the nearest double.
        column = pc.cast(column, target, safe=kind != "DOUBLE")
    return column.combine_chunks()


def _entity_ids(rows: pa.Table, entity: str) -> np.ndarray:
    """The join key column as int64: each entity once, none null."""
    column = rows.column(entity)
    if not pa.types.is_integer(column.type):
        raise ValueError(f"join key {entity!r} holds {column.type}, not integers")
    if column.null_count:
        raise ValueError(f"join key {entity!r} holds nulls")
    if pc.count_distinct(column).as_py() != len(column):
        raise ValueError(f"join key {entity!r} repeats an entity: write one row per entity")
    return np.asarray(pc.cast(column, pa.int64()).to_numpy())


def _event_micros(rows: pa.Table, timestamp: str) -> np.ndarray:
    """The event timestamps in microseconds since the epoch; an error if any is missing."""
    column = rows.column(timestamp)
    if not pa.types.is_timestamp(column.type):
        raise ValueError(f"event timestamp {timestamp!r} holds {column.type}, not timestamps")
    if column.null_count:
        raise ValueError(f"event timestamp {timestamp!r} holds nulls")
    return _micros(column.combine_chunks())


def _micros(column: pa.Array) -> np.ndarray:
    """Non-null timestamps in whole microseconds since the epoch, floored: Feast reads them
    as Python datetimes, which drop nanoseconds."""
    raw = np.asarray(column.view(pa.int64()).to_numpy(zero_copy_only=False))
    per_second = _PER_SECOND[column.type.unit]
    if per_second > 10**6:
        return raw // (per_second // 10**6)
    return raw * (10**6 // per_second)


def _entity_keys(ids: np.ndarray, join_key: str) -> pa.Array:
    """`serialize_entity_key` (version 3) of an int64 join key: a fixed header, then the id."""
    name = join_key.encode()
    header = np.frombuffer(
        np.array([1, 2, len(name)], "<u4").tobytes() + name + np.array([4, 8], "<u4").tobytes(),
        np.uint8,
    )
    matrix = np.empty((len(ids), len(header) + 8), np.uint8)
    matrix[:, : len(header)] = header
    matrix[:, len(header) :] = ids.astype("<i8").view(np.uint8).reshape(-1, 8)
    return _ragged(matrix, np.full(len(ids), matrix.shape[1]))


def serialized_values(column: pa.Array, kind: str) -> pa.Array:
    """Each value's `ValueProto.SerializeToString()` as Feast builds it for a value type
    (`python_values_to_proto_values`): a null (and a NaN double) is an unset `Value`, b"";
    a null timestamp is Feast's NaT sentinel."""
    present = np.asarray(column.is_valid().to_numpy(zero_copy_only=False))
    tag = _TAGS[kind]
    if kind == "STRING":
        text = pc.cast(column, pa.binary())
        body, lengths = _varints(np.asarray(pc.binary_length(text).fill_null(0).to_numpy()))
        header = _tagged(tag, body, lengths, present)
        return pc.binary_join_element_wise(header, text.fill_null(b""), b"")
    if kind == "DOUBLE":
        floats = np.asarray(column.fill_null(np.nan).to_numpy())
        body = floats.astype("<f8").view(np.uint8).reshape(-1, 8)
        return _tagged(tag, body, np.full(len(floats), 8), ~np.isnan(floats))
    if kind == "BOOL":
        body = np.asarray(column.fill_null(False).to_numpy(zero_copy_only=False), np.uint8)
        return _tagged(tag, body.reshape(-1, 1), np.ones(len(body), np.int64), present)
    if kind == "UNIX_TIMESTAMP":
        seconds = _micros(column.fill_null(0)) // 10**6
        seconds[~present] = _NULL_TIMESTAMP
        body, lengths = _varints(seconds)
        return _tagged(tag, body, lengths, np.ones(len(seconds), bool))
    body, lengths = _varints(np.asarray(column.fill_null(0).to_numpy()))
    return _tagged(tag, body, lengths, present)


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each int64 as a protobuf varint (ten bytes when negative, as two's complement): the
    bytes, padded to the longest, and how many of them each uses."""
    unsigned = values.astype(np.int64).view(np.uint64)
    lengths = 1 + np.searchsorted(_VARINT_LONGER, unsigned, side="right")
    width = int(lengths.max(initial=1))  # small counts need a byte or two, not ten
    groups = ((unsigned[:, None] >> _SHIFTS[:width]) & np.uint64(0x7F)).astype(np.uint8)
    groups[np.arange(width) < lengths[:, None] - 1] |= 0x80
    return groups, lengths


def _tagged(tag: int, body: np.ndarray, lengths: np.ndarray, present: np.ndarray) -> pa.Array:
    """Rows `tag` + the first `lengths` bytes of `body` where present, else empty bytes."""
    matrix = np.empty((len(body), body.shape[1] + 1), np.uint8)
    matrix[:, 0] = tag
    matrix[:, 1:] = body
    return _ragged(matrix, np.where(present, lengths + 1, 0))


def _ragged(matrix: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """A binary array whose row i is the first lengths[i] bytes of matrix row i."""
    offsets = np.zeros(len(lengths) + 1, np.int32)
    offsets[1:] = np.cumsum(lengths)
    data = matrix[np.arange(matrix.shape[1]) < lengths[:, None]]
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    return pa.Array.from_buffers(pa.binary(), len(lengths), buffers)


# --------------------------------------------------------------------------- SQLite


def _write_sqlite(store: Any, view: Any, rows: OnlineRows) -> None:
    """Upsert every (entity, feature) row in one transaction, as Feast's SQLite store does."""
    from feast.infra.online_stores.helpers import compute_table_id

    config = store.config
    table = compute_table_id(
        config.project, view, config.registry.enable_online_feature_view_versioning
    )
    by_name = sorted(range(len(rows.features)), key=rows.features.__getitem__)
    statement = _sqlite_upsert(table, [rows.features[j] for j in by_name])
    connection = store.provider.online_store._get_conn(config)
    with connection:
        connection.executemany(statement, _sqlite_parameters(rows, by_name))


def _sqlite_upsert(table: str, features: list[str]) -> str:
    """Feast's upsert of one entity's rows, a row per feature: parameters ?1 the entity key,
    ?2 the event time, then each feature's value and value text (created_ts is NULL)."""
    # One statement per entity, not per row: sqlite3's binding and stepping cost more than
    # the upserts themselves, so nine rows a statement write twice as fast.
    literals = [_sql_quoted(name, "'") for name in features]
    rows = ", ".join(
        f"(?1, {literal}, ?{3 + 2 * j}, ?{4 + 2 * j}, ?2, NULL)"
        for j, literal in enumerate(literals)
    )
    identifier = _sql_quoted(table, '"')
    return (
        f"INSERT INTO {identifier} "
        "(entity_key, feature_name, value, value_text, event_ts, created_ts) "
        f"VALUES {rows} ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
        "value = excluded.value, value_text = excluded.value_text, "
        "event_ts = excluded.event_ts, created_ts = excluded.created_ts"
    )


def _sql_quoted(text: str, quote: str) -> str:
    """`text` as an SQL literal (quote ') or identifier (quote ")."""
    return quote + text.replace(quote, quote * 2) + quote


def _sqlite_parameters(rows: OnlineRows, by_name: list[int]) -> Iterator[tuple[Any, ...]]:
    """Each entity's parameters of `_sqlite_upsert`, in the table's key order (each index
    page is then visited once)."""
    order = pa.array(np.asarray(pc.sort_indices(rows.entity_keys), np.int64))
    seconds = _sqlite_seconds(rows.event_micros)[order.to_numpy()]
    cells = [
        column.take(order).to_pylist()
        for j in by_name
        for column in (rows.values[j], _value_text(rows.columns[j], rows.kinds[j]))
    ]
    return zip(rows.entity_keys.take(order).to_pylist(), seconds.tolist(), *cells, strict=True)


def _value_text(column: pa.Array, kind: str) -> pa.Array:
    """The `value_text` Feast's SQLite store keeps beside each value: the value as `str`
    gives it, none for timestamps and nulls."""
    if kind == "INT64":
        return pc.cast(column, pa.string())
    if kind == "STRING":
        return column
    if kind == "BOOL":
        return pc.if_else(column, "True", "False")
    if kind == "DOUBLE":
        # Python's shortest repr, not Arrow's formatting; sqlite3 binds a str per value anyway.
        floats = column.fill_null(np.nan).to_numpy().tolist()
        return pa.array([None if v != v else str(v) for v in floats], pa.string())
    return pa.nulls(len(column), pa.string())


def _sqlite_seconds(micros: np.ndarray) -> np.ndarray:
    """Event times as Feast's SQLite store keeps them: `int(naive_utc.timestamp())`, which
    reads the naive UTC time in the machine's local zone and truncates toward zero."""
    if time.tzname == ("UTC", "UTC") and time.timezone == time.altzone == 0:
        return np.where(micros < 0, -(-micros // 10**6), micros // 10**6)
    epoch = datetime(1970, 1, 1)
    local = [int((epoch + timedelta(microseconds=m)).timestamp()) for m in micros.tolist()]
    return np.asarray(local, np.int64)


# --------------------------------------------------------------------------- Redis


def _write_redis(store: Any, view: Any, rows: OnlineRows) -> None:
    """Set each entity's hash as Feast's Redis store does: the event timestamp and every
    feature, unless the stored event timestamp is as new; then its expiry, if configured."""
    from feast.infra.online_stores.helpers import compute_versioned_name

    config = store.config
    online = config.online_store
    client = store.provider.online_store._get_client(online)
    name = compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)
    project = _binary(config.project.encode())
    keys = pc.binary_join_element_wise(rows.entity_keys, project, _binary(b""))
    with _connection(client) as connection:
        written = np.arange(len(keys))
        if not online.skip_dedup:
            # HGET of the one field Feast's HMGET reads: its reply is the value, not a list
            _send(connection, _commands(b"HGET", keys, f"_ts:{name}".encode()))
            stored = _stored_times(_receive(connection, len(keys)))
            written = np.flatnonzero(_newer_than_stored(rows.event_micros, stored))
        # Sent a slice at a time: Redis sets one slice's hashes while the next is built.
        for first in range(0, len(written), _SLICE_ROWS):
            chosen = written[first : first + _SLICE_ROWS]
            _send(connection, _set_commands(rows, keys.take(chosen), chosen, name, online))
        _receive(connection, len(written) * (2 if online.key_ttl_seconds else 1))


def _set_commands(
    rows: OnlineRows, keys: pa.Array, chosen: np.ndarray, view_name: str, online: Any
) -> pa.Array:
    """The `HSET` of each chosen row's event timestamp and features under its key, then
    its `EXPIRE` when the online store sets a TTL."""
    from feast.infra.online_stores.helpers import _mmh3

    seconds, fraction = np.divmod(rows.event_micros[chosen], 10**6)
    stamps = _timestamp_protos(seconds, fraction * 1000)
    fields = [
        (_mmh3(f"{view_name}:{feature}"), values.take(chosen))
        for feature, values in zip(rows.features, rows.values, strict=True)
    ]
    stamp_field = f"_ts:{view_name}".encode()
    commands = _commands(b"HSET", keys, stamp_field, stamps, *itertools.chain(*fields))
    if not online.key_ttl_seconds:
        return commands
    expiry = _commands(b"EXPIRE", keys, str(online.key_ttl_seconds).encode())
    return pc.binary_join_element_wise(commands, expiry, _binary(b""))


def _timestamp_protos(seconds: np.ndarray, nanos: np.ndarray) -> pa.Array:
    """Each time as a serialized `google.protobuf.Timestamp` (a zero field is left out)."""
    parts = [_tagged(tag, *_varints(v), v != 0) for tag, v in ((0x08, seconds), (0x10, nanos))]
    return pc.binary_join_element_wise(*parts, _binary(b""))


def _stored_times(replies: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, nanos) of each stored event `Timestamp` (zero where there is none)."""
    stored = pa.array(replies, pa.binary())
    seconds, nanos = np.zeros(len(stored), np.int64), np.zeros(len(stored), np.int64)
    held = np.flatnonzero(np.asarray(stored.is_valid().to_numpy(zero_copy_only=False)))
    if len(held):
        seconds[held], nanos[held] = _decoded_times(stored.take(held))
    return seconds, nanos


def _decoded_times(stored: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, nanos) of serialized `Timestamp`s: read in bulk as Feast writes them, and
    anything else (a field repeated, reordered) by protobuf itself."""
    matrix = _padded(stored, 2 * (1 + _VARINT_BYTES))
    seconds, after = _varint_field(matrix, 0x08, np.zeros(len(stored), np.int64))
    nanos, _ = _varint_field(matrix, 0x10, after)
    canonical = pc.equal(_timestamp_protos(seconds, nanos), stored)
    odd = ~np.asarray(canonical.to_numpy(zero_copy_only=False))
    if odd.any():
        from google.protobuf.timestamp_pb2 import Timestamp

        for row in np.flatnonzero(odd):
            parsed = Timestamp.FromString(stored[row].as_py())
            seconds[row], nanos[row] = parsed.seconds, parsed.nanos
    return seconds, nanos


def _padded(array: pa.Array, limit: int) -> np.ndarray:
    """Each row's bytes (up to `limit`), zero-padded, with room to read a varint past them."""
    offsets = _offsets(array)
    lengths = np.minimum(np.diff(offsets), limit)
    data = np.frombuffer(array.buffers()[2] or b"", np.uint8)
    data = np.concatenate([data, np.zeros(1, np.uint8)])  # so that an empty array indexes
    columns = np.arange(int(lengths.max(initial=0)) + 1 + _VARINT_BYTES)
    inside = columns < lengths[:, None]
    return np.where(inside, data[np.where(inside, offsets[:-1, None] + columns, 0)], 0).astype(
        np.uint8
    )


def _varint_field(matrix: np.ndarray, tag: int, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's varint field `tag` if it starts at `at` (else 0), and where the row goes on."""
    rows = np.arange(len(matrix))
    present = matrix[rows, at] == tag
    groups = matrix[rows[:, None], at[:, None] + 1 + np.arange(_VARINT_BYTES)]
    last = np.argmax(groups < 0x80, axis=1)
    used = np.arange(_VARINT_BYTES) <= last[:, None]
    terms = np.where(used, (groups & 0x7F).astype(np.uint64) << _SHIFTS, np.uint64(0))
    values = np.bitwise_or.reduce(terms, axis=1).view(np.int64)
    return np.where(present, values, 0), np.where(present, at + last + 2, at)


def _newer_than_stored(micros: np.ndarray, stored: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Rows Feast's Redis store writes: all but those whose stored event time is after the
    epoch and not older than theirs (a stored time at or before the epoch counts as none)."""
    seconds, nanos = stored
    # Feast compares seconds * 10**9 + nanos: the same order as normalized (seconds, nanos).
    seconds, nanos = seconds + nanos // 10**9, nanos % 10**9
    new_seconds, fraction = np.divmod(micros, 10**6)
    new_nanos = fraction * 1000
    after_epoch = (seconds > 0) | ((seconds == 0) & (nanos > 0))
    not_newer = (new_seconds < seconds) | ((new_seconds == seconds) & (new_nanos <= nanos))
    return np.asarray(~(after_epoch & not_newer))


def _commands(*arguments: bytes | pa.Array) -> pa.Array:
    """One Redis command per row, in RESP: each argument the same bytes for every row, or
    a binary array of one per row."""
    pieces: list[Any] = [b"*%d\r\n" % len(arguments)]
    for argument in arguments:
        if isinstance(argument, bytes):
            pieces.append(b"$%d\r\n%s\r\n" % (len(argument), argument))
        else:
            pieces += [_length_headers(argument), argument, b"\r\n"]
    merged: list[Any] = []
    for constant, group in itertools.groupby(pieces, key=lambda piece: isinstance(piece, bytes)):
        run = list(group)
        merged.extend([_binary(b"".join(run))] if constant else run)
    return pc.binary_join_element_wise(*merged, _binary(b""))


def _length_headers(argument: pa.Array) -> pa.Array:
    """Each row's RESP bulk string header, `$<length>\\r\\n`: one per distinct length (a
    column's values have a few), taken for every row."""
    distinct, index = np.unique(np.diff(_offsets(argument)), return_inverse=True)
    headers = pa.array([b"$%d\r\n" % length for length in distinct.tolist()], pa.binary())
    return headers.take(index)


def _binary(value: bytes) -> pa.Scalar:
    """A binary scalar (what a plain bytes argument of a pyarrow compute call becomes)."""
    return pa.scalar(value, pa.binary())


def _offsets(array: pa.Array) -> np.ndarray:
    """Where each row of a binary array starts in its data buffer, then where the last ends."""
    return np.frombuffer(array.buffers()[1], np.int32, len(array) + 1, array.offset * 4)


@contextmanager
def _connection(client: Any) -> Iterator[Any]:
    """A connection of the client's pool; dropped, not reused, if anything goes wrong."""
    connection = client.connection_pool.get_connection()
    try:
        yield connection
    except BaseException:
        connection.disconnect()  # replies may be left unread
        raise
    finally:
        client.connection_pool.release(connection)


def _send(connection: Any, commands: pa.Array) -> None:
    """Send every command in one write (a pipeline)."""
    offsets = _offsets(commands)
    connection.send_packed_command([memoryview(commands.buffers()[2])[offsets[0] : offsets[-1]]])


def _receive(connection: Any, count: int) -> list[Any]:
    """The replies of `count` commands sent; the first error among them raises."""
    from redis.exceptions import ResponseError

    replies = _replies(connection, count)
    failed = next((reply for reply in replies if isinstance(reply, ResponseError)), None)
    if failed is not None:
        raise failed
    return replies


def _replies(connection: Any, count: int) -> list[Any]:
    """`count` replies read off the connection's socket by one hiredis reader (redis-py's
    own parser costs microseconds a reply, and a night's pipeline has 100k of them)."""
    import hiredis
    from redis.exceptions import ConnectionError, ResponseError

    more = object()
    reader = hiredis.Reader(replyError=ResponseError, notEnoughData=more)
    answers: list[Any] = []
    while len(answers) < count:
        chunk = connection._sock.recv(_READ_BYTES)
        if not chunk:
            raise ConnectionError("Redis closed the connection before every reply was read")
        reader.feed(chunk)
        answer = reader.gets()
        while answer is not more:
            answers.append(answer)
            answer = reader.gets()
    return answers
