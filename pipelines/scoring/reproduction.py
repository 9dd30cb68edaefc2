"""Reproducing a published predictions partition, or some of its rows, from its lineage.

The partition's lineage columns name the model version and run that scored the night;
the night's as-of and TTL follow from the time rule as `plan` finds them. The rows are
recomputed by batch scoring's own functions (`scored_rows`, `predictions_table`) with that
version, never with whatever holds the champion alias now, and compared bit for bit:
scores by their float64 bits, feature timestamps by their ticks, the decision and lineage
by value. The night's customers are taken a shard at a time, cut as `plan` cuts them, so
memory follows a shard; given entities, only theirs are read. What cannot be recomputed
(the partition, the model version or its files, every feature partition gone) and each
differing row come with why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.contracts import EntityKey, ScoringPlan, Shard, shard_range
from pipelines.errors import EntityIdError, NotReproducedError, brief, shown
from pipelines.features import point_in_time
from pipelines.io import lake, tracking
from pipelines.scoring import publishing, sharding
from pipelines.scoring.predictor import ScoringModel, load_version
from pipelines.settings import Settings

# Differing rows a report lists (in entity order); all of them are counted.
MAX_DIFFERENCES = 10

INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Lineage:
    """What a published partition says scored it (its first row's lineage columns)."""

    model_name: str
    model_version: str
    model_run_id: str
    scoring_run_id: str


@dataclass(frozen=True)
class Comparison:
    """Rows compared, rows differing, and the first differences (each with why)."""

    compared: int = 0
    differing: int = 0
    first: list[dict[str, Any]] = field(default_factory=list)

    def __add__(self, later: Comparison) -> Comparison:
        first = (self.first + later.first)[:MAX_DIFFERENCES]
        return Comparison(self.compared + later.compared, self.differing + later.differing, first)


def entity_ids(settings: Settings, texts: Sequence[str]) -> list[EntityKey]:
    """Ids given as text, as the project's entity type holds them (int64 or string)."""
    if settings.project.entity.type == "string":
        return list(texts)
    ids: list[EntityKey] = []
    for text in texts:
        try:
            number = int(text)
        except ValueError:
            number = None
        if number is None or not INT64[0] <= number <= INT64[1]:
            raise EntityIdError(f"entity id {shown(text)} is not an int64 (the project's ids are)")
        ids.append(number)
    return ids


def published_lineage(path: Path) -> Lineage:
    """The lineage a published partition's first row names (NotReproducedError: why none)."""
    if not path.exists():
        raise NotReproducedError(
            f"the partition {path} is missing: the night was never scored, or its predictions "
            "were deleted"
        )
    try:
        parquet = pq.ParquetFile(path)
        metadata = parquet.metadata
        filled = [i for i in range(metadata.num_row_groups) if metadata.row_group(i).num_rows]
        lineage = publishing.LINEAGE_COLUMNS
        row = parquet.read_row_group(filled[0], columns=lineage).slice(0, 1) if filled else None
    except (OSError, pa.ArrowException) as error:
        raise NotReproducedError(
            f"the partition {path} cannot be read: {brief(str(error))}"
        ) from error
    if row is None:
        raise NotReproducedError(f"the partition {path} holds no rows: no lineage to follow")
    return Lineage(**{name: str(values[0]) for name, values in row.to_pydict().items()})


def lineage_model(settings: Settings, lineage: Lineage) -> tuple[str, ScoringModel]:
    """Where the version that scored the night keeps its files, and the model loaded from
    them: the lineage's version, checked against its run (NotReproducedError: why not)."""
    from mlflow.exceptions import MlflowException

    client = tracking.mlflow_client(settings)
    named = f"model version {lineage.model_version} of '{lineage.model_name}'"
    try:
        version = client.get_model_version(lineage.model_name, lineage.model_version)
        uri = client.get_model_version_download_uri(lineage.model_name, lineage.model_version)
    except MlflowException as error:
        gone = error.error_code == "RESOURCE_DOES_NOT_EXIST"
        state = "is no longer in the registry: it was deleted" if gone else "cannot be looked up"
        raise NotReproducedError(
            f"{named} (run {lineage.model_run_id}) {state} ({brief(error.message)})"
        ) from error
    if version.run_id != lineage.model_run_id:
        raise NotReproducedError(
            f"{named} now comes from run {version.run_id}, not from run "
            f"{lineage.model_run_id} that scored the night"
        )
    try:
        return uri, load_version(settings, uri)
    except (MlflowException, OSError) as error:
        raise NotReproducedError(
            f"the files of {named} cannot be loaded from {uri}: they were deleted or moved "
            f"({brief(str(error))})"
        ) from error


def lineage_plan(
    settings: Settings, day: date, lineage: Lineage, model_uri: str, published: Path
) -> ScoringPlan:
    """The night's plan rebuilt from its lineage: the version and run it names, the as-of
    and TTL `plan` finds, and shards of every customer of the window and the partition."""
    at, ttl = sharding.feature_window(settings, day)
    files = point_in_time.partition_files(settings, at - ttl, at)
    if not files:
        raise NotReproducedError(
            f"no validated features are left within {ttl} before {at.isoformat()}: every "
            f"feature partition the night could read is gone from {_feature_root(settings)}"
        )
    return ScoringPlan(
        day=day.isoformat(),
        as_of=at.isoformat(),
        model_name=lineage.model_name,
        model_version=lineage.model_version,
        model_run_id=lineage.model_run_id,
        model_uri=model_uri,
        scoring_run_id=_scoring_run_id(day, lineage),
        feature_ttl_seconds=ttl.total_seconds(),
        partitions=[path.parent.name for path in files],
        shards=sharding.entity_shards(settings, [*files, published]),
    )


def _scoring_run_id(day: date, lineage: Lineage) -> str:
    return sharding.scoring_run_id(
        day, lineage.model_name, lineage.model_version, lineage.model_run_id
    )


def _feature_root(settings: Settings) -> Path:
    return settings.validated_root / settings.project.feature_dataset


def reproduce(settings: Settings, day: date, entities: Sequence[EntityKey] = ()) -> dict[str, Any]:
    """A night's published predictions, or the rows of `entities`, recomputed from their
    lineage: a report of bit-exact equality, or of the first differences with why."""
    path = publishing.partition(settings, publishing.PREDICTIONS, day)
    report: dict[str, Any] = {
        "date": day.isoformat(),
        "partition": str(path),
        "entities": list(entities) or None,
        "model": None,
        "scoring_run_id": None,
        "features": None,
    }
    why: list[str] = []
    comparison = Comparison()
    try:
        lineage = published_lineage(path)
        recomputed_id = _scoring_run_id(day, lineage)
        report["model"] = {
            "name": lineage.model_name,
            "version": lineage.model_version,
            "run_id": lineage.model_run_id,
        }
        report["scoring_run_id"] = {
            "published": lineage.scoring_run_id,
            "recomputed": recomputed_id,
        }
        if recomputed_id != lineage.scoring_run_id:
            why.append(
                f"the published scoring_run_id {lineage.scoring_run_id} is not the one its "
                f"lineage gives ({recomputed_id}): the partition was not written by that plan"
            )
        uri, model = lineage_model(settings, lineage)
        plan = lineage_plan(settings, day, lineage, uri, path)
        report["features"] = {
            "as_of": plan.as_of,
            "ttl_seconds": plan.feature_ttl_seconds,
            "partitions": plan.partitions,
        }
        comparison = _compare_partition(settings, plan, model, path, entities)
    except NotReproducedError as error:
        why.append(str(error))
    return {
        **report,
        "rows_compared": comparison.compared,
        "rows_differing": comparison.differing,
        "equal": not why and comparison.differing == 0,
        "why": why,
        "differences": comparison.first,
    }


def not_reproduced(report: dict[str, Any]) -> NotReproducedError:
    """The error a report that is not equal ends a command with: what went wrong, briefly."""
    night = report["date"]
    if report["why"]:
        return NotReproducedError(f"night {night} is not reproduced: {report['why'][0]}")
    return NotReproducedError(
        f"night {night} is not reproduced bit for bit: {report['rows_differing']} of "
        f"{report['rows_compared']} rows differ (the report above lists the first)"
    )


def _compare_partition(
    settings: Settings,
    plan: ScoringPlan,
    model: ScoringModel,
    path: Path,
    entities: Sequence[EntityKey],
) -> Comparison:
    """The partition (or the rows of `entities`) against its recomputation, a shard at a
    time (or every asked entity at once)."""
    entity = settings.project.entity.column
    parquet = pq.ParquetFile(path)
    if entities:
        asked = sorted(set(entities))  # ids of one type
        shards: list[Shard] = [
            {"index": index, "first": key, "last": key} for index, key in enumerate(asked)
        ]
        rows = _row_groups(parquet, entity, [(key, key) for key in asked])
        published = rows.filter(pc.is_in(rows.column(entity), value_set=pa.array(asked)))
        return compare(settings, published, _recomputed(settings, plan, model, shards), asked)
    comparison = Comparison()
    for shard in plan.shards:
        first, bound, included = shard_range(shard)
        rows = _row_groups(parquet, entity, [(first, bound)])
        keys = rows.column(entity)
        below = pc.less_equal(keys, bound) if included else pc.less(keys, bound)
        published = rows.filter(pc.and_(pc.greater_equal(keys, first), below))
        comparison += compare(settings, published, _recomputed(settings, plan, model, [shard]))
    return comparison


def _row_groups(
    parquet: pq.ParquetFile, entity: str, bounds: list[tuple[EntityKey, EntityKey]]
) -> pa.Table:
    """The row groups of a sorted file that may hold ids within any of the bounds."""
    groups = {
        index
        for pair in bounds
        for index in point_in_time.row_groups_holding(parquet, entity, pair)
    }
    return parquet.read_row_groups(sorted(groups))


def _recomputed(
    settings: Settings, plan: ScoringPlan, model: ScoringModel, shards: list[Shard]
) -> pa.Table:
    """The published rows of the shards' customers, as the plan's scoring gives them now."""
    scored = [publishing.scored_rows(settings, plan, model, shard) for shard in shards]
    return publishing.predictions_table(settings, plan, pa.concat_tables(scored))


def compare(
    settings: Settings,
    published: pa.Table,
    recomputed: pa.Table,
    asked: Sequence[EntityKey] = (),
) -> Comparison:
    """Published rows against recomputed ones, matched by entity and compared bit for bit;
    `asked` ids are compared even if neither side holds them."""
    entity = settings.project.entity.column
    published, recomputed = published.sort_by(entity), recomputed.sort_by(entity)
    ours, theirs = published.column(entity), recomputed.column(entity)
    held = pc.is_in(ours, value_set=theirs.combine_chunks())
    kept = pc.is_in(theirs, value_set=ours.combine_chunks())
    both, again = published.filter(held), recomputed.filter(kept)
    changed = {
        name: _differs(both.column(name), again.column(name))
        for name in published.column_names
        if name != entity
    }
    differing = np.zeros(both.num_rows, dtype=bool)
    for mask in changed.values():
        differing |= mask
    rows = np.flatnonzero(differing)[:MAX_DIFFERENCES]
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any] | None, list[str]]] = [
        (_row(both, index), _row(again, index), [n for n, m in changed.items() if m[index]])
        for index in rows
    ]
    gone = published.filter(pc.invert(held))
    new = recomputed.filter(pc.invert(kept))
    pairs += [(row, None, []) for row in gone.slice(0, MAX_DIFFERENCES).to_pylist()]
    pairs += [(None, row, []) for row in new.slice(0, MAX_DIFFERENCES).to_pylist()]
    neither = _held_by_neither(asked, ours, theirs)
    found = [_difference(settings, entity, *pair) for pair in pairs]
    found += [_absent(entity, key) for key in neither[:MAX_DIFFERENCES]]
    found.sort(key=lambda item: item[entity])
    return Comparison(
        compared=published.num_rows + new.num_rows + len(neither),
        differing=int(differing.sum()) + gone.num_rows + new.num_rows + len(neither),
        first=found[:MAX_DIFFERENCES],
    )


def _held_by_neither(
    asked: Sequence[EntityKey], ours: pa.ChunkedArray, theirs: pa.ChunkedArray
) -> list[EntityKey]:
    """The asked ids neither side holds."""
    if not asked:
        return []
    ids = pa.array(asked)
    held = pc.or_(
        pc.is_in(ids, value_set=ours.combine_chunks()),
        pc.is_in(ids, value_set=theirs.combine_chunks()),
    )
    return ids.filter(pc.invert(held)).to_pylist()


def _differs(published: pa.ChunkedArray, recomputed: pa.ChunkedArray) -> np.ndarray:
    """Where two columns differ in any bit: floats by their bits, timestamps by their
    ticks, anything else (dictionaries decoded) by value."""
    ours, theirs = _exact(published), _exact(recomputed)
    return np.asarray(ours != theirs, dtype=bool)


def _exact(column: pa.ChunkedArray) -> np.ndarray:
    """A column's values as numpy compares them exactly."""
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if pa.types.is_floating(column.type):
        return pc.cast(column, pa.float64()).to_numpy().view(np.uint64)
    if pa.types.is_timestamp(column.type):
        return pc.cast(column, pa.int64()).to_numpy()
    return column.to_numpy(zero_copy_only=False)


def _row(table: pa.Table, index: int) -> dict[str, Any]:
    return table.slice(index, 1).to_pylist()[0]


def _difference(
    settings: Settings,
    entity: str,
    published: dict[str, Any] | None,
    recomputed: dict[str, Any] | None,
    columns: list[str],
) -> dict[str, Any]:
    """One differing row as a report lists it: both sides' values, what differs and why."""
    key = (published or recomputed or {})[entity]
    return {
        entity: key,
        "columns": columns or None,
        "published": _values(settings, published, columns),
        "recomputed": _values(settings, recomputed, columns),
        "why": _why(settings, published, recomputed, columns),
    }


def _absent(entity: str, key: EntityKey) -> dict[str, Any]:
    """An asked entity neither the partition nor the window holds."""
    why = "not in the partition, and no feature row of it is in the window now"
    return {entity: key, "columns": None, "published": None, "recomputed": None, "why": why}


def _values(
    settings: Settings, row: dict[str, Any] | None, columns: list[str]
) -> dict[str, Any] | None:
    """A row's score, decision and feature timestamp, and any other column that differs."""
    if row is None:
        return None
    out = settings.project.scoring
    shown_columns = [out.score_column, out.predicted_label_column, "feature_timestamp"]
    shown_columns += [name for name in columns if name not in shown_columns]
    return {name: _plain(row[name]) for name in shown_columns}


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _holder(settings: Settings, stamp: datetime) -> Path:
    """The feature partition a row of that timestamp lives in (its UTC day)."""
    day = stamp.astimezone(UTC).date()
    return lake.partition_file(settings.validated_root, settings.project.feature_dataset, day)


def _used(settings: Settings, stamp: datetime) -> str:
    """What became of the feature row of `stamp` that the night used."""
    holder = _holder(settings, stamp)
    where = (
        f"is no longer in the lake: {holder} is missing"
        if not holder.exists()
        else f"is no longer read from {holder}: that partition was rewritten without it, "
        "or the feature view's TTL no longer reaches it"
    )
    return f"the feature row the night used ({stamp.isoformat()}) {where}"


def _why(
    settings: Settings,
    published: dict[str, Any] | None,
    recomputed: dict[str, Any] | None,
    columns: list[str],
) -> str:
    """Why a row differs from its recomputation, from the timestamps and the lake."""
    if published is None:
        assert recomputed is not None
        stamp = recomputed["feature_timestamp"]
        return (
            f"not in the partition: the night scored no row for it, yet its feature row of "
            f"{stamp.isoformat()} ({_holder(settings, stamp)}) is in the window now: it "
            "landed after the night was scored"
        )
    used = published["feature_timestamp"]
    if recomputed is None:
        return f"{_used(settings, used)}, and no other row of it is in the window"
    now = recomputed["feature_timestamp"]
    if now < used:
        return (
            f"{_used(settings, used)}; the latest row in the window now is of "
            f"{now.isoformat()} ({_holder(settings, now)})"
        )
    if now > used:
        return (
            f"a newer feature row ({now.isoformat()}, in {_holder(settings, now)}) is in the "
            f"window now: it landed after the night was scored from the row of {used.isoformat()}"
        )
    out = settings.project.scoring
    if out.score_column in columns:
        return (
            f"the same feature row ({used.isoformat()}, in {_holder(settings, used)}) scores "
            "differently now: its values changed since the night was scored, or the model's "
            "libraries score them differently"
        )
    if out.predicted_label_column in columns:
        return f"the same score is decided differently: the threshold is now {out.threshold}"
    return (
        f"its lineage ({', '.join(columns)}) differs from the recomputation's, which follows "
        "the partition's first row"
    )
