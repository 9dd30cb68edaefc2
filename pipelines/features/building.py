"""The nightly feature build of an events source: one feature row per active entity.

Events land per day, any number per entity. Each night keeps a compact state beside the
lake (`lake/state/<feature dataset>/date=D/`): per entity and event day, the partial
aggregates of that day (rows, sums, counts, minimums, maximums, distinct values) for the
last `max(window)` days, and per entity its first and last event day and last values.
Night D is night D-1's state plus D's events, so its cost follows the day's events and
the state, not the history. Built with Arrow compute: the lake is Arrow already, its
grouped aggregations are multi-threaded C++, and it adds no dependency.

Rules (a brute-force recomputation from all events gives the same rows; see the tests):
an event of day E counts in a window of w days on night D when D - w < E <= D; `last` is
the last non-null value up to D (by timestamp, then landing order); day counts are whole
days from the first or last event day to D; an entity has a row on night D when its last
event is within `active_days`. The row's timestamp is the last microsecond of D: the
features know all of D and nothing after it.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import contracts
from pipelines.contracts import BuiltFeatures
from pipelines.ingest import contract
from pipelines.io import lake
from pipelines.project import Aggregations, Project
from pipelines.settings import Settings

log = logging.getLogger(__name__)

STATE_ZONE = "state"
DAY, ROWS = "day", "rows"
FIRST_DAY, LAST_DAY = "first_day", "last_day"
# Row groups as validated files have them, so a scoring shard reads only its entities.
ROW_GROUP_ROWS = 10_000
# The partial aggregates of a day each function needs, and how a window combines them.
_PARTS = {"sum": ("sum",), "mean": ("sum", "n"), "min": ("min",), "max": ("max",)}
_PARTS |= {"distinct_count": ("distinct",), "last": (), "count": ()}
_DAY_FUNCTION = {"sum": "sum", "n": "count", "min": "min", "max": "max", "distinct": "distinct"}
_WINDOW_FUNCTION = {"sum": "sum", "n": "sum", "min": "min", "max": "max"}


@dataclass(frozen=True)
class State:
    """The state after a night: daily partial aggregates within the longest window, and
    one row per entity ever seen."""

    buckets: pa.Table
    entities: pa.Table


def aggregations_of(project: Project) -> Aggregations:
    """The project's aggregations; a clear error for a snapshot source."""
    if project.aggregations is None:
        raise ValueError(f"project {project.name!r} has a snapshot source: nothing to build")
    return project.aggregations


def _parts(project: Project) -> list[tuple[str, str]]:
    """(column, part) pairs the declared features need, in a stable order."""
    needed = {
        (item.column, part)
        for item in aggregations_of(project).features.values()
        if item.column is not None
        for part in _PARTS[item.function]
    }
    return sorted(needed)


def _last_columns(project: Project) -> list[str]:
    features = aggregations_of(project).features.values()
    return sorted({i.column for i in features if i.function == "last" and i.column})


def _aggregate(
    table: pa.Table, key: str, specs: list[tuple[str, str]], names: list[str], ordered: bool = False
) -> pa.Table:
    """`table` grouped by `key`, each (column, function) of `specs` named as `names`."""
    grouped = table.group_by(key, use_threads=not ordered).aggregate(specs)
    outputs = {
        name: grouped.column(f"{column}_{function}")
        for name, (column, function) in zip(names, specs, strict=True)
    }
    return pa.table({key: grouped.column(key), **outputs})


def _constant_day(day: date, rows: int) -> pa.Array:
    return pa.array([day] * rows, pa.date32())


def day_buckets(events: pa.Table, project: Project, day: date) -> pa.Table:
    """Per entity, the partial aggregates of one day's events."""
    key, parts = project.entity.column, _parts(project)
    specs = [(key, "count"), *((column, _DAY_FUNCTION[part]) for column, part in parts)]
    names = [ROWS, *(f"{column}__{part}" for column, part in parts)]
    grouped = _aggregate(events, key, specs, names)
    return grouped.add_column(1, DAY, _constant_day(day, grouped.num_rows))


def _day_entities(events: pa.Table, project: Project, day: date) -> pa.Table:
    """Per entity: the day as first and last event day, and the day's last values."""
    key, lasts = project.entity.column, _last_columns(project)
    ordered = events.select([key, project.source.timestamp, *lasts]).sort_by(
        project.source.timestamp
    )
    specs = [(column, "last") for column in lasts]
    grouped = _aggregate(ordered, key, specs, [f"{c}__last" for c in lasts], ordered=True)
    days = _constant_day(day, grouped.num_rows)
    return grouped.add_column(1, FIRST_DAY, days).add_column(2, LAST_DAY, days)


def advance(state: State, events: pa.Table, project: Project, day: date) -> State:
    """The state after night `day`: the previous night's plus the day's events."""
    key = project.entity.column
    longest = max(aggregations_of(project).windows.values())
    since = pa.scalar(day - timedelta(days=longest - 1), pa.date32())
    kept = state.buckets.filter(pc.field(DAY) >= since)
    buckets = pa.concat_tables([kept, day_buckets(events, project, day)])
    # The day's rows after the earlier ones: an ordered "last" keeps the newest value.
    both = pa.concat_tables([state.entities, _day_entities(events, project, day)])
    lasts = [name for name in both.column_names if name.endswith("__last")]
    specs = [(FIRST_DAY, "min"), (LAST_DAY, "max"), *((name, "last") for name in lasts)]
    entities = _aggregate(both, key, specs, [FIRST_DAY, LAST_DAY, *lasts], ordered=True)
    return State(buckets, entities)


def empty_state(project: Project) -> State:
    """The state before any event."""
    events = contract.arrow_schema(project).empty_table()
    never = date(1970, 1, 1)
    return State(day_buckets(events, project, never), _day_entities(events, project, never))


def _window_totals(buckets: pa.Table, project: Project, day: date, days: int) -> pa.Table:
    """Per entity, the partial aggregates of a window combined: rows, sums, extremes and
    distinct counts of the events of the `days` days up to `day`."""
    key = project.entity.column
    since = pa.scalar(day - timedelta(days=days - 1), pa.date32())
    window = buckets.filter(pc.field(DAY) >= since)
    parts = [(c, p) for c, p in _parts(project) if p != "distinct"]
    specs = [(ROWS, "sum"), *((f"{c}__{p}", _WINDOW_FUNCTION[p]) for c, p in parts)]
    totals = _aggregate(window, key, specs, [ROWS, *(f"{c}__{p}" for c, p in parts)])
    for column in sorted({c for c, p in _parts(project) if p == "distinct"}):
        values = window.column(f"{column}__distinct").combine_chunks()
        flat = pa.table(
            {
                key: pc.take(window.column(key), pc.list_parent_indices(values)),
                column: pc.list_flatten(values),
            }
        )
        distinct = _aggregate(flat, key, [(column, "count_distinct")], [f"{column}__distinct"])
        totals = totals.join(distinct, key, join_type="left outer")
    return totals


def _day_number(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def feature_rows(state: State, project: Project, day: date) -> pa.Table:
    """Night `day`'s feature table from its state, sorted by entity."""
    key, aggregations = project.entity.column, aggregations_of(project)
    since = pa.scalar(day - timedelta(days=aggregations.active_days - 1), pa.date32())
    rows = state.entities.filter(pc.field(LAST_DAY) >= since)
    for window, days in aggregations.windows.items():
        totals = _window_totals(state.buckets, project, day, days)
        renamed = totals.rename_columns([key, *(f"{window}:{n}" for n in totals.column_names[1:])])
        rows = rows.join(renamed, key, join_type="left outer")
    rows = rows.sort_by(key)
    today = _day_number(day)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {key: rows.column(key)}
    end = contracts.midnight_after(day) - timedelta(microseconds=1)
    columns[project.source.timestamp] = pa.array(
        [end] * rows.num_rows, contract.ARROW_TYPES["timestamp"]
    )
    for name, item in aggregations.features.items():
        columns[name] = _feature(rows, item.function, item.column, item.window, today)
    return pa.table(columns, schema=contract.feature_schema(project))


def _feature(
    rows: pa.Table, function: str, column: str | None, window: str | None, today: int
) -> pa.ChunkedArray:
    """One feature column from the joined state and window totals."""

    def total(part: str) -> pa.ChunkedArray:
        return rows.column(f"{window}:{column}__{part}")

    if function == "count":
        return pc.coalesce(rows.column(f"{window}:{ROWS}"), 0)
    if function in ("sum", "distinct_count"):
        values = total("sum" if function == "sum" else "distinct")
        return pc.coalesce(values, pa.scalar(0, values.type))
    if function in ("min", "max"):
        return total(function)
    if function == "mean":
        counts = total("n")
        sums = pc.cast(total("sum"), pa.float64())
        return pc.if_else(
            pc.greater(counts, 0), pc.divide(sums, pc.cast(counts, pa.float64())), None
        )
    if function == "last":
        return rows.column(f"{column}__last")
    since = FIRST_DAY if function == "days_since_first" else LAST_DAY
    return pc.subtract(
        pa.scalar(today, pa.int64()), pc.cast(pc.cast(rows.column(since), pa.int32()), pa.int64())
    )


def _state_dir(settings: Settings, day: date) -> Path:
    zone = settings.lake_root / STATE_ZONE
    return lake.partition_dir(zone, settings.project.feature_dataset, day)


def state_days(settings: Settings) -> list[date]:
    """Nights whose state is stored, in order."""
    return lake.partition_days(settings.lake_root / STATE_ZONE, settings.project.feature_dataset)


def load_state(settings: Settings, day: date) -> State:
    """The stored state after night `day`."""
    folder = _state_dir(settings, day)
    return State(
        pq.read_table(folder / "buckets.parquet"), pq.read_table(folder / "entities.parquet")
    )


def save_state(settings: Settings, state: State, day: date) -> Path:
    """Store the state after night `day`, whole or not at all (written aside, then renamed)."""
    folder = _state_dir(settings, day)
    aside = folder.with_name(f".{folder.name}.writing")
    shutil.rmtree(aside, ignore_errors=True)
    lake.write_table_atomic(state.buckets, aside / "buckets.parquet")
    lake.write_table_atomic(state.entities, aside / "entities.parquet")
    shutil.rmtree(folder, ignore_errors=True)
    aside.rename(folder)
    return folder


def _events(settings: Settings, day: date) -> pa.Table:
    """The validated events of a night (none if the night has no validated partition)."""
    path = lake.partition_file(settings.validated_root, settings.project.source.dataset, day)
    schema = contract.arrow_schema(settings.project)
    return pq.read_table(path, schema=schema) if path.is_file() else schema.empty_table()


def state_before(settings: Settings, day: date) -> tuple[State, date]:
    """The newest stored state of a night before `day` (or the empty state before the
    first validated night) and that night."""
    earlier = [d for d in state_days(settings) if d < day]
    if earlier:
        return load_state(settings, earlier[-1]), earlier[-1]
    landed = lake.partition_days(settings.validated_root, settings.project.source.dataset)
    first = min([d for d in landed if d <= day], default=day)
    return empty_state(settings.project), first - timedelta(days=1)


def build_features(settings: Settings, day: date) -> BuiltFeatures:
    """The night's feature partition for an events source; nothing for a snapshot source,
    whose validated partition is its feature table."""
    if settings.project.aggregations is None:
        path = lake.partition_file(settings.validated_root, settings.project.feature_dataset, day)
        return BuiltFeatures(day.isoformat(), str(path), 0, 0, 0, skipped=True)
    return build_night(settings, day)


def build_night(settings: Settings, day: date) -> BuiltFeatures:
    """Night `day`'s feature partition, from the previous night's state and the day's
    events (replaying the nights in between when their state is missing)."""
    project = settings.project
    state, since = state_before(settings, day)
    replayed = 0
    night = since
    while night < day:
        night += timedelta(days=1)
        state = advance(state, _events(settings, night), project, night)
        save_state(settings, state, night)
        replayed += 1
    # Later states were built without this night's events: the next build replays them.
    for stale in [d for d in state_days(settings) if d > day]:
        shutil.rmtree(_state_dir(settings, stale))
    table = feature_rows(state, project, day)
    target = lake.partition_file(settings.validated_root, project.feature_dataset, day)
    lake.write_table_atomic(table, target, ROW_GROUP_ROWS)
    built = BuiltFeatures(
        day=day.isoformat(),
        path=str(target),
        entities=table.num_rows,
        nights_replayed=replayed,
        state_rows=state.buckets.num_rows + state.entities.num_rows,
    )
    log.info("built features %s", built)
    return built
