"""Planning a night's scoring (the model version and the shards of its customers), and
reading a shard's features.

Features are read point-in-time through the model's Feast feature service, with
the semantics of Feast's `get_historical_features` for an entity timestamp T
(the midnight after the scored day, exactly as training labels are stamped):
per customer, the latest row with T - ttl <= ts <= T. Like materialization,
only the partitions inside that window are read, and a shard reads only its
range of customers (validated files are sorted by entity in small row groups),
so a shard's memory depends on the shard, not on the customer base.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines import contracts, faults
from pipelines.contracts import EntityKey, ScoringPlan, Shard
from pipelines.errors import NoChampionError, NoFeaturesError
from pipelines.features import point_in_time
from pipelines.io import feast_store, tracking
from pipelines.registry import model_versions
from pipelines.settings import Settings


def _window_files(settings: Settings, at: datetime, ttl: timedelta) -> list[Path]:
    return point_in_time.partition_files(settings, at - ttl, at)


def scoring_run_id(day: date, model_name: str, version: str, model_run_id: str) -> str:
    """An id derived from the inputs, so re-scoring the same inputs writes the same bytes."""
    key = f"{day.isoformat()}|{model_name}|{version}|{model_run_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _entity_ranges(path: Path, entity: str) -> np.ndarray | None:
    """Each row group's (least entity, greatest entity, rows), from the file's statistics.

    None unless every row group has signed integer statistics and the groups are in ascending,
    non-overlapping order, as in a file sorted by entity (validated files are).
    """
    parquet = pq.ParquetFile(path)
    if not pa.types.is_signed_integer(parquet.schema_arrow.field(entity).type):
        return None
    groups = _row_groups(parquet, entity)
    if groups is None:
        return None
    found = np.array(groups, dtype=np.int64).reshape(-1, 3)
    return found


def _customers_below(found: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Estimated distinct customers below each edge of the files' row groups.

    Between two consecutive edges each file holds customers at its row group's density
    (rows over the span of ids it covers). Files are taken as independent draws of ids,
    so a span of n ids held at densities d1, d2, ... holds n * (1 - prod(1 - d))
    customers: exact for daily snapshots of dense ids, close under random churn. Edges
    are Python integers: the edge after the greatest id may be 2**63, beyond int64.
    """
    bounds = [
        np.r_[ranges[:, 0].astype(object), ranges[:, 1].astype(object) + 1] for ranges in found
    ]
    edges = np.unique(np.concatenate(bounds))
    inner = edges[:-1].astype(np.int64)
    spans = np.diff(edges).astype(np.float64)
    missed = np.ones(len(spans))
    for ranges in found:
        group = np.searchsorted(ranges[:, 0], inner, side="right") - 1
        inside = (group >= 0) & (inner <= ranges[np.maximum(group, 0), 1])
        widths = ranges[:, 1].astype(np.float64) - ranges[:, 0].astype(np.float64) + 1
        density = ranges[:, 2] / widths
        missed *= 1 - np.where(inside, np.minimum(density[np.maximum(group, 0)], 1.0), 0.0)
    return edges, np.r_[0.0, np.cumsum(spans * (1 - missed))]


def _shards_from_statistics(
    files: list[Path], entity: str, shard_rows: int, max_shards: int
) -> list[Shard] | None:
    """Ranges of customers cut from row-group statistics alone, without reading a row.

    The distinct customers are estimated from the statistics (`_customers_below`): their
    total sets the shard count, and the ranges hold equal parts of them. None when a
    file's statistics cannot bound its customers.
    """
    read = [_entity_ranges(path, entity) for path in files]
    known = [ranges for ranges in read if ranges is not None]
    if len(known) < len(read):
        return None
    found = [ranges for ranges in known if len(ranges)]
    if not found:
        return []
    edges, below = _customers_below(found)
    total = below[-1]
    count = min(max_shards, max(1, math.ceil(round(total) / shard_rows)))
    # Interpolated in floats (whose steps near 2**63 are 2,048 ids): a cut is only where a
    # shard ends, so it may be off by that much; it stays an integer inside the range.
    cuts = np.interp(total * np.arange(1, count) / count, below, edges.astype(np.float64))
    least, greatest = int(edges[0]), int(edges[-1]) - 1
    starts = [least, *sorted({int(cut) for cut in np.floor(cuts) if least < int(cut) <= greatest})]
    lasts = [start - 1 for start in starts[1:]] + [greatest]
    return [
        {"index": index, "first": first, "last": last}
        for index, (first, last) in enumerate(zip(starts, lasts, strict=True))
    ]


def _distinct_ids(files: list[Path], entity: str) -> pa.Array:
    """Every distinct customer of the files, sorted, as one Arrow array."""
    ids = ds.dataset([str(f) for f in files], format="parquet").to_table(columns=[entity])[entity]
    return pc.unique(ids).sort()


def _shards_in_memory(
    files: list[Path], entity: str, shard_rows: int, max_shards: int
) -> list[Shard]:
    """Equal ranges of every distinct customer, read into memory (for files whose
    statistics cannot bound their customers)."""
    ids = _distinct_ids(files, entity)
    count = min(max_shards, max(1, math.ceil(len(ids) / shard_rows)))
    bounds = np.array_split(ids.to_numpy(), count)
    return [
        {"index": i, "first": int(part[0]), "last": int(part[-1])}
        for i, part in enumerate(bounds)
        if len(part)
    ]


def _text_shards(least: str, cuts: list[str], greatest: str) -> list[Shard]:
    """Ranges of text ids from least to greatest, each cut starting a shard: a shard ends
    before the next one's first id (text has no next id to end on)."""
    starts = [least, *sorted({cut for cut in cuts if least < cut <= greatest})]
    shards: list[Shard] = [
        {"index": index, "first": first, "before": following}
        for index, (first, following) in enumerate(itertools.pairwise(starts))
    ]
    return [*shards, {"index": len(starts) - 1, "first": starts[-1], "last": greatest}]


def _cut_positions(rows: int, count: int) -> list[int]:
    """Where `count` equal parts of `rows` sorted rows start, but the first."""
    return [rows * part // count for part in range(1, count)]


def _text_shards_in_memory(
    files: list[Path], entity: str, shard_rows: int, max_shards: int
) -> list[Shard]:
    """Equal ranges of every distinct text id, read into memory as one Arrow array (for
    files whose statistics cannot bound their ids)."""
    ids = _distinct_ids(files, entity)
    if not len(ids):
        return []
    count = min(max_shards, max(1, math.ceil(len(ids) / shard_rows)))
    cuts = [ids[position].as_py() for position in _cut_positions(len(ids), count)]
    return _text_shards(ids[0].as_py(), cuts, ids[-1].as_py())


def _row_groups(parquet: pq.ParquetFile, entity: str) -> list[tuple[Any, Any, int]] | None:
    """Each row group's (least id, greatest id, rows), from its statistics.

    None unless every row group has them and the groups are in ascending, non-overlapping
    order, as in a file sorted by entity (validated files are).
    """
    at = parquet.schema_arrow.get_field_index(entity)
    groups = []
    for index in range(parquet.metadata.num_row_groups):
        group = parquet.metadata.row_group(index)
        stats = group.column(at).statistics
        if group.num_rows == 0:
            continue
        if stats is None or not stats.has_min_max or stats.null_count:
            return None
        groups.append((stats.min, stats.max, group.num_rows))
    if any(after[0] <= before[1] for before, after in itertools.pairwise(groups)):
        return None
    return groups


def _ids_at(parquet: pq.ParquetFile, entity: str, positions: list[int]) -> list[str]:
    """The ids at row positions of a sorted file, reading only the row groups holding them."""
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    offsets = np.cumsum([0, *sizes])
    found = []
    for group in sorted({int(np.searchsorted(offsets, p, side="right")) - 1 for p in positions}):
        ids = parquet.read_row_group(group, columns=[entity]).column(0)
        low, high = offsets[group], offsets[group + 1]
        found += [ids[p - low].as_py() for p in positions if low <= p < high]
    return found


def _text_shards_from_statistics(
    files: list[Path], entity: str, shard_rows: int, max_shards: int
) -> list[Shard] | None:
    """Ranges of text ids cut at equal parts of the largest file, reading only the row groups
    where the cuts fall (a row group of ids each), never every id.

    Text ids cannot be interpolated between row-group bounds as integers are. The largest
    file (a daily snapshot holds nearly every customer of the window) sets the shard count
    and is cut into equal parts; ids the other files add fall into the ranges around them.
    None when a file's statistics cannot bound its ids.
    """
    parquets = [pq.ParquetFile(path) for path in files]
    read = [_row_groups(parquet, entity) for parquet in parquets]
    groups = [found for found in read if found is not None]
    if len(groups) < len(read):
        return None
    sizes = [sum(rows for _, _, rows in found) for found in groups]
    if not any(sizes):
        return []
    largest = max(range(len(sizes)), key=lambda index: (sizes[index], index))
    count = min(max_shards, max(1, math.ceil(sizes[largest] / shard_rows)))
    cuts = _ids_at(parquets[largest], entity, _cut_positions(sizes[largest], count))
    least = min(found[0][0] for found in groups if found)
    greatest = max(found[-1][1] for found in groups if found)
    return _text_shards(least, cuts, greatest)


def _shards(files: list[Path], entity: str, shard_rows: int, max_shards: int) -> list[Shard]:
    """The night's shards: from the files' statistics, else from their ids in memory."""
    text = pa.types.is_string(pq.read_schema(files[-1]).field(entity).type)
    read, in_memory = (
        (_text_shards_from_statistics, _text_shards_in_memory)
        if text
        else (_shards_from_statistics, _shards_in_memory)
    )
    shards = read(files, entity, shard_rows, max_shards)
    return in_memory(files, entity, shard_rows, max_shards) if shards is None else shards


def feature_window(settings: Settings, day: date) -> tuple[datetime, timedelta]:
    """A night's as-of (the time rule's midnight after it) and its features' TTL (the feature
    view's): the night scores each customer's latest row with as_of - ttl <= ts <= as_of."""
    store = feast_store.feature_store(settings)
    ttl = store.get_feature_view(settings.project.source.feature_view).ttl
    return contracts.midnight_after(day), ttl


def entity_shards(settings: Settings, files: list[Path]) -> list[Shard]:
    """The customers of the files cut into shards of the scoring settings' size."""
    entity, sizing = settings.project.entity.column, settings.scoring
    return _shards(files, entity, sizing.shard_rows, sizing.max_shards)


def plan(settings: Settings, day: date, alias: str = contracts.CHAMPION) -> ScoringPlan:
    """Resolve the model version once and split the night's customers into shards."""
    version = model_versions.alias_version(settings, alias)
    name = settings.project.model.name
    if version is None:
        raise NoChampionError(
            f"registered model '{name}' has no '{alias}' alias: train and promote a model "
            "first (the `training` DAG or `python -m pipelines train`)"
        )
    client = tracking.mlflow_client(settings)
    run_id = client.get_model_version(name, version).run_id
    # Where the version's files are: shards load them without asking the registry again.
    model_uri = client.get_model_version_download_uri(name, version)
    at, ttl = feature_window(settings, day)
    files = _window_files(settings, at, ttl)
    if not files:
        raise NoFeaturesError(f"no validated features within {ttl} before {at.isoformat()}")
    shards = entity_shards(settings, files)
    planned = ScoringPlan(
        day=day.isoformat(),
        as_of=at.isoformat(),
        model_name=name,
        model_version=version,
        model_run_id=run_id,
        model_uri=model_uri,
        scoring_run_id=scoring_run_id(day, name, version, run_id),
        feature_ttl_seconds=ttl.total_seconds(),
        partitions=[path.parent.name for path in files],
        shards=shards,
    )
    faults.crash_here(settings, "scoring.planned")
    return planned


def shard_features(
    settings: Settings,
    scoring: ScoringPlan,
    first: EntityKey,
    last: EntityKey,
    columns: list[str],
    last_included: bool = True,
) -> pa.Table:
    """Point-in-time features of customers first..last (`last` itself only if included):
    the latest row with T - ttl <= ts <= T.

    Text features come dictionary-encoded, as the files store them.
    """
    names = settings.project
    at = datetime.fromisoformat(scoring.as_of)
    ttl = timedelta(seconds=scoring.feature_ttl_seconds)
    window = point_in_time.Window(
        names.entity.column, names.source.timestamp, at - ttl, at, (first, last)
    )
    files = _window_files(settings, at, ttl)
    rows = point_in_time.latest_rows(files, window, columns, text_as_dictionary=True)
    # Rows come sorted by entity: an excluded last customer is the last row, if any.
    if not last_included and rows.num_rows and rows.column(window.entity)[-1].as_py() == last:
        rows = rows.slice(0, rows.num_rows - 1)
    return rows
