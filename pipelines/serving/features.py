"""Online features of entities: Feast's online store read through the model's feature
service, typed as the nightly feature partitions are, so one `predict` scores both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.errors import ConfigurationError
from pipelines.ingest.contract import feature_schema
from pipelines.io import feast_store
from pipelines.settings import Settings

FEATURE_TIMESTAMP = "feature_timestamp"
_MICROS = 1_000_000
_NANOS_PER_MICRO = 1_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class OnlineFeatures:
    """The online store, the model's feature service and the types its features have in
    the nightly partitions (the contract's)."""

    store: Any
    service: Any
    schema: pa.Schema
    ttl: timedelta

    @property
    def entity(self) -> pa.Field:
        """The entity's key column."""
        return self.schema.field(0)


def open_online_features(settings: Settings) -> OnlineFeatures:
    """The project's online store and feature service, as the registry holds them."""
    from feast.errors import FeatureServiceNotFoundException

    store = feast_store.feature_store(settings)
    project = settings.project
    try:
        service = store.get_feature_service(project.model.feature_service)
    except FeatureServiceNotFoundException:
        raise ConfigurationError(
            f"feature service {project.model.feature_service!r} is not registered in the "
            f"Feast project {settings.feast_project!r} under {settings.state_root}: run the "
            "feature pipeline for a night first (make demo, or python -m pipelines run)"
        ) from None
    ttl = store.get_feature_view(project.source.feature_view).ttl
    return OnlineFeatures(store, service, feature_schema(project), ttl)


def read(online: OnlineFeatures, ids: Sequence[int | str]) -> pa.Table:
    """Each entity's latest materialized features, in the order asked: its key, the event
    time of its features (null when the store has none) and the service's features."""
    entity = online.entity
    response = online.store.get_online_features(
        features=online.service, entity_rows=[{entity.name: key} for key in ids]
    )
    values = response.to_dict()
    columns: dict[str, pa.Array] = {
        entity.name: pa.array(ids, entity.type),
        FEATURE_TIMESTAMP: _event_times(response.proto, len(ids), online.schema.field(1).type),
    }
    for field in online.schema:
        if field.name in values and field.name != entity.name:
            columns[field.name] = pa.array(values[field.name], field.type)
    return pa.table(columns)


def _event_times(proto: Any, rows: int, kind: pa.DataType) -> pa.Array:
    """The latest event time of each row's features (they share their view's), null where
    no feature was found."""
    micros = np.zeros(rows, dtype=np.int64)
    for vector in proto.results:
        for row, stamp in enumerate(vector.event_timestamps):
            micros[row] = max(
                micros[row], stamp.seconds * _MICROS + stamp.nanos // _NANOS_PER_MICRO
            )
    return pa.array(micros, pa.int64(), mask=micros == 0).cast(kind)


def fresh(online: OnlineFeatures, rows: pa.Table, as_of: datetime) -> np.ndarray:
    """Which rows have features within the feature view's TTL before `as_of`, the window
    batch scoring reads from (a row newer than `as_of` counts as fresh)."""
    oldest = np.datetime64((as_of - online.ttl - _EPOCH) // timedelta(microseconds=1), "us")
    stamps = rows.column(FEATURE_TIMESTAMP).to_numpy(zero_copy_only=False)
    stamps = stamps.astype("datetime64[us]")
    return ~np.isnat(stamps) & (stamps >= oldest)
