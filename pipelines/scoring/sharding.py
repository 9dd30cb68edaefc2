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
import math
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines import contracts, faults
from pipelines.contracts import ScoringPlan
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
    at = parquet.schema_arrow.get_field_index(entity)
    ranges = []
    for index in range(parquet.metadata.num_row_groups):
        group = parquet.metadata.row_group(index)
        stats = group.column(at).statistics
        if group.num_rows == 0:
            continue
        if stats is None or not stats.has_min_max or stats.null_count:
            return None
        ranges.append((stats.min, stats.max, group.num_rows))
    found = np.array(ranges, dtype=np.int64).reshape(-1, 3)
    if bool(np.any(found[1:, 0] <= found[:-1, 1])):
        return None
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
) -> list[dict[str, int]] | None:
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


def _shards_in_memory(
    files: list[Path], entity: str, shard_rows: int, max_shards: int
) -> list[dict[str, int]]:
    """Equal ranges of every distinct customer, read into memory (for files whose
    statistics cannot bound their customers)."""
    ids = pc.unique(
        ds.dataset([str(f) for f in files], format="parquet").to_table(columns=[entity])[entity]
    ).sort()
    count = min(max_shards, max(1, math.ceil(len(ids) / shard_rows)))
    bounds = np.array_split(ids.to_numpy(), count)
    return [
        {"index": i, "first": int(part[0]), "last": int(part[-1])}
        for i, part in enumerate(bounds)
        if len(part)
    ]


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
    store = feast_store.feature_store(settings)
    ttl = store.get_feature_view(settings.project.source.feature_view).ttl
    at = contracts.midnight_after(day)
    files = _window_files(settings, at, ttl)
    if not files:
        raise NoFeaturesError(f"no validated features within {ttl} before {at.isoformat()}")
    entity, sizing = settings.project.entity.column, settings.scoring
    shards = _shards_from_statistics(files, entity, sizing.shard_rows, sizing.max_shards)
    if shards is None:
        shards = _shards_in_memory(files, entity, sizing.shard_rows, sizing.max_shards)
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
    settings: Settings, scoring: ScoringPlan, first: int, last: int, columns: list[str]
) -> pa.Table:
    """Point-in-time features of customers first..last: latest row with T - ttl <= ts <= T.

    Text features come dictionary-encoded, as the files store them.
    """
    names = settings.project
    at = datetime.fromisoformat(scoring.as_of)
    ttl = timedelta(seconds=scoring.feature_ttl_seconds)
    window = point_in_time.Window(
        names.entity.column, names.source.timestamp, at - ttl, at, (first, last)
    )
    files = _window_files(settings, at, ttl)
    return point_in_time.latest_rows(files, window, columns, text_as_dictionary=True)
