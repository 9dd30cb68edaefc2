"""Feast store handle, repository apply, and windowed materialization.

Stock `FeatureStore.materialize` reads the whole file source to pick the latest
row per entity in a window, so one day costs as much as the whole history.
`materialize_window` keeps its semantics (rows with start <= ts <= end, the
latest per entity, written through Feast's own online-write path) but reads
only the partitions that can hold such rows: the validation gate guarantees
every timestamp of partition ``date=D`` lies inside day D.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import yaml

from pipelines import lake
from pipelines.errors import ConfigurationError
from pipelines.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaterializationResult:
    """What one materialization wrote (JSON-friendly, for XCom and Asset extras)."""

    feature_view: str
    start: str
    end: str
    partitions: list[str]
    rows_read: int
    entities_written: int


def repo_config_dict(settings: Settings) -> dict[str, Any]:
    """`feature_store.yaml` contents for the settings' profile."""
    root = settings.feast_root
    if settings.profile == "production":
        registry: dict[str, Any] = {
            "registry_type": "sql",
            "path": settings.feast.registry_sql_url,
            "cache_ttl_seconds": 60,
        }
        online: dict[str, Any] = {
            "type": "redis",
            "connection_string": settings.feast.redis_connection,
        }
    else:
        registry = {
            "registry_type": "file",
            "path": str(root / "registry.db"),
            "cache_ttl_seconds": 60,
        }
        online = {"type": "sqlite", "path": str(root / "online_store.db")}
    return {
        "project": settings.feast.project,
        "provider": "local",
        "registry": registry,
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }


def feature_store(settings: Settings) -> Any:
    """A `FeatureStore` configured from settings (no repository files are read)."""
    from feast import FeatureStore, RepoConfig

    settings.feast_root.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(repo_path=settings.feature_repo, **repo_config_dict(settings))
    return FeatureStore(repo_path=str(settings.feature_repo), config=config)


def write_feature_store_yaml(settings: Settings) -> Path:
    """Render the store's config for the `feast` CLI (`feast -c feature_repo -f <this>`)."""
    target = settings.feast_root / "feature_store.yaml"
    lake.write_bytes_atomic(
        yaml.safe_dump(repo_config_dict(settings), sort_keys=False).encode(), target
    )
    return target


def apply_repo(settings: Settings) -> Any:
    """Register the repository's objects (idempotent) and return the store."""
    from feature_repo.definitions import build

    store = feature_store(settings)
    store.apply(build(settings))
    write_feature_store_yaml(settings)
    return store


def materialization_window(
    settings: Settings, interval_start: datetime, interval_end: datetime
) -> tuple[datetime, datetime]:
    """The window for a DAG run's data interval, widened at the start for late data."""
    return interval_start - settings.feast.materialize_overlap, interval_end


def partition_files(settings: Settings, start: datetime, end: datetime) -> list[Path]:
    """Validated partition files that can hold rows with start <= ts <= end."""
    names = settings.dataset
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    files = [lake.partition_file(settings.validated_root, names.raw_dataset, day) for day in days]
    return [path for path in files if path.exists()]


def window_rows(
    files: list[Path],
    entity: str,
    timestamp: str,
    columns: list[str],
    start: datetime,
    end: datetime,
    entities: tuple[int, int] | None = None,
    batch_rows: int | None = None,
) -> pa.Table:
    """Rows of `files` with start <= timestamp <= end (Feast's file-source bounds).

    `entities` keeps only keys first..last; with files sorted by entity, row
    groups outside that range are skipped from their statistics.
    """
    if not files:
        return pa.table({})
    dataset = ds.dataset([str(path) for path in files], format="parquet")
    window = _window_filter(entity, timestamp, start, end, entities)
    options = {"batch_size": batch_rows} if batch_rows else {}
    return dataset.to_table(columns=[entity, timestamp, *columns], filter=window, **options)


def _window_filter(
    entity: str,
    timestamp: str,
    start: datetime,
    end: datetime,
    entities: tuple[int, int] | None,
) -> ds.Expression:
    bound = pa.timestamp("us", tz="UTC")
    window = (ds.field(timestamp) >= pa.scalar(start, bound)) & (
        ds.field(timestamp) <= pa.scalar(end, bound)
    )
    if entities is not None:
        window &= (ds.field(entity) >= entities[0]) & (ds.field(entity) <= entities[1])
    return window


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


_FILE_INDEX = "__file_index"


def latest_rows(
    files: list[Path],
    entity: str,
    timestamp: str,
    columns: list[str],
    start: datetime,
    end: datetime,
    entities: tuple[int, int] | None = None,
    batch_rows: int | None = None,
) -> pa.Table:
    """Latest row per entity among rows with start <= timestamp <= end.

    The same rows as `latest_per_entity(window_rows(...))`, in two passes so that
    only winning rows are decoded in full: the keys (entity, timestamp) of every
    file pick each entity's latest row and the file holding it, then each file's
    columns are read for the entities it wins only (on a daily lake, all of them
    come from the newest file). Ties go to the later file, then the later row.
    """
    if not files:
        return pa.table({})
    dataset = ds.dataset([str(path) for path in files], format="parquet")
    window = _window_filter(entity, timestamp, start, end, entities)
    options: dict[str, Any] = {"schema": dataset.schema}
    if batch_rows:
        options["batch_size"] = batch_rows
    fragments = list(dataset.get_fragments())
    keys = [f.to_table(columns=[entity, timestamp], filter=window, **options) for f in fragments]
    tagged = pa.concat_tables(
        key.append_column(_FILE_INDEX, pa.array(np.full(key.num_rows, i, dtype=np.int32)))
        for i, key in enumerate(keys)
    )
    winners = latest_per_entity(tagged, entity, timestamp)
    wanted = [entity, timestamp, *columns]
    parts = []
    for i, fragment in enumerate(fragments):
        won = winners.filter(pc.equal(winners.column(_FILE_INDEX), i)).column(entity)
        if len(won) == 0:
            continue
        where = window
        if len(won) < keys[i].num_rows:  # some of its rows lose to a later file
            where = window & ds.field(entity).isin(won.combine_chunks())
        parts.append(fragment.to_table(columns=wanted, filter=where, **options))
    if not parts:
        return dataset.to_table(columns=wanted, filter=window)
    return latest_per_entity(pa.concat_tables(parts), entity, timestamp)


def materialize_window(
    settings: Settings, start: datetime, end: datetime, store: Any | None = None
) -> MaterializationResult:
    """Write the latest feature values of [start, end] into the online store."""
    store = store or feature_store(settings)
    names = settings.dataset
    view = store.get_feature_view(names.feature_view)
    files = partition_files(settings, start, end)
    features = [field.name for field in view.features]
    rows = window_rows(files, names.entity, names.timestamp, features, start, end)
    latest = latest_per_entity(rows, names.entity, names.timestamp)
    batch_rows = settings.feast.online_write_batch_rows
    for offset in range(0, latest.num_rows, batch_rows):
        chunk = latest.slice(offset, batch_rows).to_pandas()
        store.write_to_online_store(view.name, chunk)
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


def day_interval(day: date) -> tuple[datetime, datetime]:
    """The data interval [midnight, next midnight) of a calendar day, in UTC."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def label_days(settings: Settings, as_of: date, window_days: int) -> list[date]:
    """Landing days of the latest `window_days` label partitions known on `as_of`."""
    landed = lake.partition_days(settings.raw_root, settings.dataset.label_dataset)
    return [day for day in landed if day <= as_of][-window_days:]


def load_labels(
    settings: Settings,
    as_of: date,
    window_days: int | None = None,
    prediction_start: date | None = None,
    prediction_end: date | None = None,
) -> pd.DataFrame:
    """Labels known on `as_of`: the entity dataframe of a point-in-time training set.

    By default the latest `training.window_days` labelled days; a prediction-day
    range (inclusive) narrows it. Only label partitions that can hold the window
    are read (a label lands on or after its prediction day).
    """
    names = settings.dataset
    if prediction_start is not None:
        landed = lake.partition_days(settings.raw_root, names.label_dataset)
        days = [day for day in landed if prediction_start <= day <= as_of]
    else:
        days = label_days(settings, as_of, window_days or settings.training.window_days)
    files = [lake.partition_file(settings.raw_root, names.label_dataset, day) for day in days]
    if not files:
        raise ConfigurationError(f"no labels have landed by {as_of.isoformat()}")
    frame = ds.dataset([str(f) for f in files], format="parquet").to_table().to_pandas()
    predicted_on = frame[names.timestamp].dt.date - timedelta(days=1)
    keep = pd.Series(True, index=frame.index)
    if prediction_start is not None:
        keep &= predicted_on >= prediction_start
    if prediction_end is not None:
        keep &= predicted_on <= prediction_end
    return frame.loc[keep, [names.entity, names.timestamp, names.label]].reset_index(drop=True)


def training_set(
    settings: Settings, labels: pd.DataFrame, store: Any | None = None
) -> pd.DataFrame:
    """Point-in-time join of labels with the feature service (Feast `get_historical_features`)."""
    store = store or feature_store(settings)
    service = store.get_feature_service(settings.dataset.feature_service)
    joined = store.get_historical_features(entity_df=labels, features=service).to_df()
    names = settings.dataset
    # Feast's file store drops a label whose rows all fall outside its TTL window;
    # keep every label, with missing features, so the training-set suite sees it.
    keys = [names.entity, names.timestamp]
    added = [column for column in joined.columns if column not in labels.columns]
    joined = labels.merge(joined[[*keys, *added]].drop_duplicates(keys), on=keys, how="left")
    return joined.sort_values([names.timestamp, names.entity], kind="stable").reset_index(drop=True)
