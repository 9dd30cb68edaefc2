"""The point-in-time reader: each entity's latest row within a window of partitions.

What Feast's offline store computes for a window (rows with start <= ts <= end, the
latest per entity), read from the parquet files alone: row-group statistics skip what
cannot win, and only the winners' row groups are decoded in full.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines.contracts import EntityKey
from pipelines.io import lake
from pipelines.settings import Settings


def partition_files(settings: Settings, start: datetime, end: datetime) -> list[Path]:
    """Validated partition files that can hold rows with start <= ts <= end."""
    names = settings.project
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    files = [
        lake.partition_file(settings.validated_root, names.feature_dataset, day) for day in days
    ]
    return [path for path in files if path.exists()]


@dataclass(frozen=True)
class Window:
    """The rows a point-in-time read considers: start <= timestamp <= end (Feast's
    file-source bounds), and only entity ids first..last when `entities` is given."""

    entity: str
    timestamp: str
    start: datetime
    end: datetime
    entities: tuple[EntityKey, EntityKey] | None = None

    def rows_filter(self) -> ds.Expression:
        """The window as a dataset filter."""
        bound = pa.timestamp("us", tz="UTC")
        stamp = ds.field(self.timestamp)
        inside = (stamp >= pa.scalar(self.start, bound)) & (stamp <= pa.scalar(self.end, bound))
        among = self.entities_filter()
        return inside if among is None else inside & among

    def entities_filter(self) -> ds.Expression | None:
        """The entity range as a dataset filter (None: every entity)."""
        if self.entities is None:
            return None
        first, last = self.entities
        return (ds.field(self.entity) >= first) & (ds.field(self.entity) <= last)


def window_rows(
    files: list[Path], window: Window, columns: list[str], batch_rows: int | None = None
) -> pa.Table:
    """Rows of `files` inside the window: entity, timestamp and `columns`.

    With files sorted by entity, row groups outside the window's entity range are
    skipped from their statistics.
    """
    if not files:
        return pa.table({})
    dataset = ds.dataset([str(path) for path in files], format="parquet")
    options = {"batch_size": batch_rows} if batch_rows else {}
    wanted = [window.entity, window.timestamp, *columns]
    return dataset.to_table(columns=wanted, filter=window.rows_filter(), **options)


def latest_per_entity(table: pa.Table, entity: str, timestamp: str) -> pa.Table:
    """The latest row of each entity (Feast keeps the last row after sorting by time)."""
    if table.num_rows == 0:
        return table
    # Sort the keys only (a stable sort, as Table.sort_by), then take each winner once.
    order = pc.sort_indices(
        table.select([entity, timestamp]),
        sort_keys=[(entity, "ascending"), (timestamp, "ascending")],
    )
    keys = table.column(entity).take(order)
    # Last row of each run of equal keys: the next key differs (or the table ends).
    is_last = pc.not_equal(keys.slice(0, len(keys) - 1), keys.slice(1))
    mask = pa.concat_arrays([is_last.combine_chunks(), pa.array([True])])
    return table.take(order.filter(mask))


_ROW = "__row"


@dataclass(frozen=True)
class _WindowKeys:
    """A file's rows inside a window: their keys and where they lie among the rows read.

    `stamps` is None where the file's statistics prove every timestamp read inside
    the window; `earliest` and `latest` then bound them from the statistics. `rows`
    holds the rows read with every column asked for, when asked for. `ascending`:
    each entity is held at most once, in order.
    """

    row_groups: list[int]
    offsets: np.ndarray  # first row of each read row group among the rows read, then the total
    positions: np.ndarray
    entities: np.ndarray
    stamps: np.ndarray | None
    earliest: np.datetime64 | None
    latest: np.datetime64 | None
    ascending: bool
    rows: pa.Table | None = None


def row_groups_holding(
    parquet: pq.ParquetFile, column: str, bounds: tuple[EntityKey, EntityKey] | None
) -> list[int]:
    """Row groups whose statistics of `column` may hold a value in bounds (inclusive).

    Without bounds, or statistics, a row group may hold anything.
    """
    metadata = parquet.metadata
    at = parquet.schema_arrow.get_field_index(column)
    groups = []
    for index in range(metadata.num_row_groups):
        stats = metadata.row_group(index).column(at).statistics
        beaten = (
            bounds is not None
            and stats is not None
            and stats.has_min_max
            and (stats.max < bounds[0] or stats.min > bounds[1])
        )
        if not beaten:
            groups.append(index)
    return groups


def _utc64(moment: datetime) -> np.datetime64:
    """An aware datetime as a naive UTC numpy datetime64, in microseconds."""
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "us")


def _group_stamp_bounds(
    parquet: pq.ParquetFile, timestamp: str, row_groups: list[int]
) -> list[tuple[np.datetime64, np.datetime64] | None]:
    """Each row group's least and greatest timestamp from its statistics; None where they
    cannot bound it (not a UTC timestamp, no statistics, or nulls)."""
    schema = parquet.schema_arrow
    kind = schema.field(timestamp).type
    exact = pa.types.is_timestamp(kind) and kind.tz is not None and kind.unit != "ns"
    if not exact:  # statistics of nanoseconds come back truncated
        return [None] * len(row_groups)
    at, metadata = schema.get_field_index(timestamp), parquet.metadata
    found: list[tuple[np.datetime64, np.datetime64] | None] = []
    for index in row_groups:
        stats = metadata.row_group(index).column(at).statistics
        known = stats is not None and stats.has_min_max and stats.null_count == 0
        found.append((_utc64(stats.min), _utc64(stats.max)) if known else None)
    return found


def _stamp_bounds(
    parquet: pq.ParquetFile, timestamp: str, row_groups: list[int]
) -> tuple[np.datetime64, np.datetime64] | None:
    """The least and greatest timestamp of these row groups from their statistics, if
    every one has them (UTC timestamps without nulls); None otherwise."""
    found = _group_stamp_bounds(parquet, timestamp, row_groups)
    known = [bounds for bounds in found if bounds is not None]
    if not known or len(known) < len(found):
        return None
    return min(bounds[0] for bounds in known), max(bounds[1] for bounds in known)


def _losing_groups(
    parquet: pq.ParquetFile, window: Window, row_groups: list[int], later: _WindowKeys
) -> set[int]:
    """Row groups whose rows all lose to a later file's window rows, from statistics alone.

    Every integer id such a group can hold (within the window's) is among the later file's,
    each held once there, and none of its timestamps is after the later file's earliest:
    each of its rows meets a row of the same entity that is as late or later (a tie goes
    to the later file). On a daily lake that is every row group of an older day.
    """
    ids, entity, entities = later.entities, window.entity, window.entities
    if later.earliest is None or len(ids) == 0 or not later.ascending:
        return set()
    schema = parquet.schema_arrow
    if not pa.types.is_integer(schema.field(entity).type):
        return set()
    at, metadata = schema.get_field_index(entity), parquet.metadata
    losing = set()
    for index, stamps in zip(
        row_groups, _group_stamp_bounds(parquet, window.timestamp, row_groups), strict=True
    ):
        stats = metadata.row_group(index).column(at).statistics
        if stamps is None or stamps[1] > later.earliest:
            continue
        if stats is None or not stats.has_min_max or stats.null_count:
            continue
        low, high = stats.min, stats.max
        if entities is not None:
            low, high = max(low, entities[0]), min(high, entities[1])
        held = np.searchsorted(ids, high, side="right") - np.searchsorted(ids, low, side="left")
        if high < low or held == high - low + 1:
            losing.add(index)
    return losing


def _window_keys(
    parquet: pq.ParquetFile,
    window: Window,
    stamps: bool,
    later: _WindowKeys | None = None,
    columns: list[str] | None = None,
) -> _WindowKeys:
    """The keys of a file's rows inside the window.

    Row groups whose statistics lie outside the window's entity range are not read;
    unless `stamps` is asked for, neither are timestamps the statistics prove inside.
    Given the keys of a `later` file, row groups whose rows all lose to it are not read.
    `columns` are read along with the keys, in one pass, for rows likely to win.
    """
    entity, timestamp = window.entity, window.timestamp
    row_groups = row_groups_holding(parquet, entity, window.entities)
    if later is not None:
        losing = _losing_groups(parquet, window, row_groups, later)
        row_groups = [index for index in row_groups if index not in losing]
    sizes = [parquet.metadata.row_group(index).num_rows for index in row_groups]
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    bounds = None if stamps else _stamp_bounds(parquet, timestamp, row_groups)
    if bounds is not None and not (
        _utc64(window.start) <= bounds[0] and bounds[1] <= _utc64(window.end)
    ):
        bounds = None  # some may lie outside the window: filter on the timestamps
    # The same filter expressions as window_rows, so bounds and nulls behave alike.
    if bounds is None:
        key_columns = [entity, timestamp]
        where = window.rows_filter()
    else:
        key_columns = [entity]
        where = window.entities_filter()
    rows = parquet.read_row_groups(
        row_groups, columns=list(dict.fromkeys([*key_columns, *(columns or [])]))
    )
    keys = rows.select(key_columns)
    keys = keys.append_column(_ROW, pa.array(np.arange(keys.num_rows, dtype=np.int64)))
    inside = keys if where is None or keys.num_rows == 0 else keys.filter(where)
    ids = inside.column(entity).to_numpy()
    read = None
    if bounds is None:
        read = inside.column(timestamp).to_numpy()
        bounds = (read.min(), read.max()) if len(read) else None
    return _WindowKeys(
        row_groups=row_groups,
        offsets=offsets,
        positions=inside.column(_ROW).to_numpy(),
        entities=ids,
        stamps=read,
        earliest=None if bounds is None else bounds[0],
        latest=None if bounds is None else bounds[1],
        ascending=not bool(np.any(ids[1:] <= ids[:-1])),
        rows=None if columns is None else rows.select(columns),
    )


def _in_time_order(keys: list[_WindowKeys]) -> bool:
    """Whether each file holds an entity at most once, in order, and no file's rows are
    older than an earlier file's: then an entity's latest row is in the last file holding it.
    """
    latest = None
    for key in keys:
        if len(key.entities) == 0:
            continue
        if not key.ascending:
            return False
        if latest is not None and key.earliest is not None and key.earliest < latest:
            return False
        latest = key.latest
    return True


def _last_file_first(keys: list[_WindowKeys]) -> list[np.ndarray]:
    """Winning positions per file when files are in time order: an entity's last file wins.

    Works on sorted keys alone (no sort of the window): walking from the last file,
    a file wins the entities no later file holds.
    """
    won: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(keys)
    seen = np.empty(0, dtype=np.int64)
    for index in reversed(range(len(keys))):
        ids = keys[index].entities
        if not len(seen):  # the last file holding any: all of its rows win
            won[index], seen = keys[index].positions, ids
            continue
        slot = np.minimum(np.searchsorted(seen, ids), len(seen) - 1)
        fresh = seen[slot] != ids
        won[index] = keys[index].positions[fresh]
        if fresh.any():
            seen = np.concatenate([seen, ids[fresh]])
            seen.sort(kind="stable")  # two sorted runs: merged in linear time
    return won


def _by_sorting(keys: list[_WindowKeys]) -> list[np.ndarray]:
    """Winning positions per file in general: the latest row, ties to the later file, then row."""
    entities = np.concatenate([key.entities for key in keys])
    stamps = np.concatenate([key.stamps for key in keys])
    positions = np.concatenate([key.positions for key in keys])
    files = np.repeat(np.arange(len(keys)), [len(key.entities) for key in keys])
    order = np.lexsort((positions, files, stamps, entities))
    ranked = entities[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = ranked[1:] != ranked[:-1]
    chosen = order[last]
    return [np.sort(positions[chosen[files[chosen] == index]]) for index in range(len(keys))]


def _read_rows(
    parquet: pq.ParquetFile,
    read: tuple[list[int], np.ndarray, pa.Table | None],
    won: np.ndarray,
    columns: list[str],
) -> pa.Table:
    """Columns of a file's winning rows (ascending positions among the rows of the row
    groups its keys read, which start at the offsets): taken from the rows read along
    with the keys, if any, else decoded from the row groups that hold them."""
    row_groups, offsets, rows = read
    if rows is not None:
        return _rows_at(rows.select(columns), won)
    group = np.searchsorted(offsets, won, side="right") - 1
    needed = group[np.r_[True, group[1:] != group[:-1]]]  # `won` ascends, so does `group`
    sizes = np.diff(offsets)[needed]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    table = parquet.read_row_groups([row_groups[i] for i in needed], columns=columns)
    return _rows_at(table, won - offsets[group] + starts[np.searchsorted(needed, group)])


def _rows_at(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """The table's rows at ascending positions: a slice when they are one run."""
    if rows[-1] - rows[0] + 1 == len(rows):  # one run of rows (a shard of a sorted file)
        return table.slice(rows[0], len(rows))
    return table.take(rows)


def _by_entity(table: pa.Table, entity: str) -> pa.Table:
    """The table ordered by its (unique) entities, as `latest_per_entity` returns it."""
    ids = table.column(entity).to_numpy()
    if bool(np.all(ids[1:] > ids[:-1])):
        return table
    return table.take(np.argsort(ids, kind="stable"))


def _open(files: list[Path], columns: list[str], text_as_dictionary: bool) -> list[pq.ParquetFile]:
    """The window's files; their text columns kept dictionary-encoded when asked."""
    text = []
    if text_as_dictionary:
        schema = pq.read_schema(files[-1])
        text = [name for name in columns if pa.types.is_string(schema.field(name).type)]
    return [pq.ParquetFile(path, read_dictionary=text) for path in files]


def _keys_in_parallel(
    parquets: list[pq.ParquetFile], window: Window, stamps: bool, later: _WindowKeys | None
) -> list[_WindowKeys]:
    """The window's keys of several files."""
    # Files decode in parallel: Arrow releases the GIL, and one key column per file
    # leaves its own column-parallel reader a single column.
    with ThreadPoolExecutor(max_workers=pa.cpu_count()) as pool:
        return list(pool.map(lambda file: _window_keys(file, window, stamps, later), parquets))


def _winners(
    parquets: list[pq.ParquetFile], window: Window, wanted: list[str]
) -> tuple[list[_WindowKeys], list[np.ndarray]]:
    """Each file's keys in the window, and the rows of each file holding a winner."""

    # The newest file first: older row groups whose rows all lose to it are not read.
    # Its rows are read whole along with its keys: in time order every one of them wins.
    def newest(stamps: bool) -> _WindowKeys:
        return _window_keys(parquets[-1], window, stamps, columns=wanted)

    latest = newest(stamps=False)
    keys = [*_keys_in_parallel(parquets[:-1], window, stamps=False, later=latest), latest]
    if _in_time_order(keys):
        return keys, _last_file_first(keys)
    # Ordering by time needs every row's timestamp.
    keys = [*_keys_in_parallel(parquets[:-1], window, True, None), newest(stamps=True)]
    return keys, _by_sorting(keys)


def latest_rows(
    files: list[Path], window: Window, columns: list[str], text_as_dictionary: bool = False
) -> pa.Table:
    """Latest row per entity among the rows inside the window.

    The same rows as `latest_per_entity(window_rows(...))`, ties going to the later
    file, then the later row. The newest file's rows are read whole (on a daily lake
    they are all but a few of the winners); of older files only the keys (entity,
    timestamp) are read to pick each entity's row, then only the row groups holding
    winners are decoded in full. Keys of older row groups that the statistics prove
    beaten by the newest file are not read.
    Validated files, sorted by entity with one row per entity and day, are resolved
    without sorting the window; other files by one sort of its keys.
    `text_as_dictionary` returns the text columns dictionary-encoded, as parquet stores
    them, rather than one string per row.
    """
    if not files:
        return pa.table({})
    parquets = _open(files, columns, text_as_dictionary)
    wanted = [window.entity, window.timestamp, *columns]
    keys, winners = _winners(parquets, window, wanted)
    read = [(key.row_groups, key.offsets, key.rows) for key in keys]
    del keys  # the window's keys are done with: free them before decoding the winners
    parts = [
        _read_rows(file, where, won, wanted)
        for file, where, won in zip(parquets, read, winners, strict=True)
        if len(won)
    ]
    if not parts:
        schema = parquets[0].schema_arrow
        return pa.schema([schema.field(name) for name in wanted]).empty_table()
    return _by_entity(pa.concat_tables(parts), window.entity)
