"""Labels and the point-in-time training set."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines import contracts
from pipelines.contracts import DerivedLabels
from pipelines.errors import ConfigurationError
from pipelines.io import lake
from pipelines.io.feast_store import feature_store
from pipelines.settings import Settings


def label_days(settings: Settings, as_of: date, window_days: int) -> list[date]:
    """Landing days of the latest `window_days` label partitions known on `as_of`."""
    landed = lake.partition_days(settings.raw_root, settings.project.label.dataset)
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
    names = settings.project
    if prediction_start is not None:
        landed = lake.partition_days(settings.raw_root, names.label.dataset)
        days = [day for day in landed if prediction_start <= day <= as_of]
    else:
        days = label_days(settings, as_of, window_days or settings.training.window_days)
    files = [lake.partition_file(settings.raw_root, names.label.dataset, day) for day in days]
    if not files:
        raise ConfigurationError(f"no labels have landed by {as_of.isoformat()}")
    frame = ds.dataset([str(f) for f in files], format="parquet").to_table().to_pandas()
    predicted_on = (frame[names.source.timestamp] - contracts.NIGHT).dt.date
    keep = pd.Series(True, index=frame.index)
    if prediction_start is not None:
        keep &= predicted_on >= prediction_start
    if prediction_end is not None:
        keep &= predicted_on <= prediction_end
    return frame.loc[
        keep, [names.entity.column, names.source.timestamp, names.label.column]
    ].reset_index(drop=True)


def derive_labels(settings: Settings, night: date) -> DerivedLabels:
    """Labels a derived rule can tell on `night`: for the prediction day `horizon` days
    before, 1 for each entity it had features for that has an event in the days after
    (up to and including `night`), else 0. Written where landed labels land, dated
    `night`, with the label time rule of landed ones (the midnight after the day)."""
    project = settings.project
    rule = project.label.derived
    if rule is None:
        return DerivedLabels(night.isoformat(), "", "", 0, 0, skipped=True)
    predicted = night - timedelta(days=rule.event_within_days)
    features = lake.partition_file(settings.validated_root, project.feature_dataset, predicted)
    if not features.is_file():
        return DerivedLabels(night.isoformat(), predicted.isoformat(), "", 0, 0, skipped=True)
    key = project.entity.column
    entities = pq.read_table(features, columns=[key]).column(key)
    later = [
        lake.partition_file(settings.validated_root, project.source.dataset, day)
        for day in (predicted + timedelta(days=n) for n in range(1, rule.event_within_days + 1))
    ]
    seen = [pq.read_table(path, columns=[key]).column(key) for path in later if path.is_file()]
    returned = (
        pa.chunked_array(seen, entities.type) if seen else pa.chunked_array([], entities.type)
    )
    labels = pa.table(
        {
            key: entities,
            project.source.timestamp: pa.array(
                [contracts.label_time(predicted)] * len(entities), pa.timestamp("us", tz="UTC")
            ),
            project.label.column: pc.cast(
                pc.is_in(entities, value_set=returned.combine_chunks()), pa.int64()
            ),
        }
    )
    target = lake.partition_file(settings.raw_root, project.label.dataset, night)
    lake.write_table_atomic(labels, target)
    positives = pc.sum(labels.column(project.label.column)).as_py() or 0
    return DerivedLabels(
        night.isoformat(), predicted.isoformat(), str(target), len(entities), positives
    )


def training_set(
    settings: Settings, labels: pd.DataFrame, store: Any | None = None
) -> pd.DataFrame:
    """Point-in-time join of labels with the feature service (Feast `get_historical_features`)."""
    store = store or feature_store(settings)
    service = store.get_feature_service(settings.project.model.feature_service)
    names = settings.project
    # Feast's file store pairs every label with all of its entity's feature rows before it
    # keeps those within the TTL: memory grows with labels times history (a year of CDNOW
    # nights took 24 GB in one call). Whole days of labels, up to `labels_per_join` a call,
    # bound it; fewer calls keep it fast (each reads the whole source: a call a day took a
    # 15-day world 111 s, one call 8 s). Each label's row is found the same way, alone or
    # among others.
    joined = pd.concat(
        [
            store.get_historical_features(entity_df=part, features=service).to_df()
            for part in _day_groups(
                labels, names.source.timestamp, settings.training.labels_per_join
            )
        ],
        ignore_index=True,
    )
    # Feast's file store drops a label whose rows all fall outside its TTL window;
    # keep every label, with missing features, so the training-set suite sees it.
    keys = [names.entity.column, names.source.timestamp]
    added = [column for column in joined.columns if column not in labels.columns]
    joined = labels.merge(joined[[*keys, *added]].drop_duplicates(keys), on=keys, how="left")
    return joined.sort_values(
        [names.source.timestamp, names.entity.column], kind="stable"
    ).reset_index(drop=True)


def _day_groups(labels: pd.DataFrame, timestamp: str, most: int) -> list[pd.DataFrame]:
    """The labels in groups of whole days, in day order, each of at most `most` labels
    unless one day alone has more."""
    groups: list[pd.DataFrame] = []
    days: list[pd.DataFrame] = []
    count = 0
    for _, day in labels.groupby(timestamp, sort=True):
        if days and count + len(day) > most:
            groups.append(pd.concat(days))
            days, count = [], 0
        days.append(day)
        count += len(day)
    if days:
        groups.append(pd.concat(days))
    return groups or [labels]
