"""Materialization of a window of validated partitions into the Feast online store.

Stock `FeatureStore.materialize` reads the whole file source to pick the latest
row per entity in a window, so one day costs as much as the whole history.
`materialize_window` keeps its semantics (rows with start <= ts <= end, the
latest per entity, stored as Feast's own online-write path stores them) but reads
only the partitions that can hold such rows: the validation gate guarantees
every timestamp of partition ``date=D`` lies inside day D. The rows are written in
bulk (`pipelines.io.online_store`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import faults
from pipelines.contracts import MaterializationResult
from pipelines.features.point_in_time import (
    Window,
    latest_per_entity,
    partition_files,
    window_rows,
)
from pipelines.io import online_store
from pipelines.io.feast_store import feature_store
from pipelines.settings import Settings

log = logging.getLogger(__name__)


def materialization_window(
    settings: Settings, start: datetime, end: datetime
) -> tuple[datetime, datetime]:
    """The window a night's [start, end) materializes, widened at the start for late rows."""
    return start - settings.feast.materialize_overlap, end


def _not_older_than_online(
    store: Any, view: Any, latest: pa.Table, entity: str, timestamp: str, batch_rows: int
) -> pa.Table:
    """The rows at least as new (to the second Feast reports) as their entity's online row."""
    from feast.online_response import TIMESTAMP_POSTFIX

    feature = view.features[0].name
    ids = latest.column(entity).to_pylist()
    online: list[int] = []
    for offset in range(0, len(ids), batch_rows):
        response = store.get_online_features(
            features=[f"{view.name}:{feature}"],
            entity_rows=[{entity: value} for value in ids[offset : offset + batch_rows]],
        ).to_dict(include_event_timestamps=True)
        online.extend(response[f"{feature}{TIMESTAMP_POSTFIX}"])
    seconds = pc.cast(latest.column(timestamp), pa.timestamp("s", tz="UTC"), safe=False)
    ours = pc.cast(seconds, pa.int64()).to_numpy(zero_copy_only=False)
    return latest.filter(pa.array(ours >= np.asarray(online, dtype=np.int64)))


def materialize_window(
    settings: Settings, start: datetime, end: datetime, store: Any | None = None
) -> MaterializationResult:
    """Write the latest feature values of [start, end] into the online store.

    A window older than one already materialized (a backfill, or a past night rerun)
    writes only rows at least as new as the entity's online row, so the online store
    always ends with each entity's newest values, whatever order nights run in (the
    rule Feast's Redis store applies itself; its SQLite store keeps the last write).
    """
    store = store or feature_store(settings)
    names = settings.project
    view = store.get_feature_view(names.source.feature_view)
    files = partition_files(settings, start, end)
    features = [field.name for field in view.features]
    rows = window_rows(
        files, Window(names.entity.column, names.source.timestamp, start, end), features
    )
    latest = latest_per_entity(rows, names.entity.column, names.source.timestamp)
    batch_rows = settings.feast.online_write_batch_rows
    if any(materialized > end for _, materialized in view.materialization_intervals):
        latest = _not_older_than_online(
            store, view, latest, names.entity.column, names.source.timestamp, batch_rows
        )
    latest = online_store.key_ordered(store, view, latest)
    for offset in range(0, latest.num_rows, batch_rows):
        online_store.write_rows(store, view, latest.slice(offset, batch_rows))
        faults.crash_here(settings, "materialize.batch_written")
    faults.crash_here(settings, "materialize.written")
    store.registry.apply_materialization(view, store.project, start, end)
    result = MaterializationResult(
        feature_view=view.name,
        start=start.isoformat(),
        end=end.isoformat(),
        partitions=[path.parent.name for path in files],
        rows_read=rows.num_rows,
        entities_written=latest.num_rows,
    )
    log.info("materialized %s", result)
    return result
