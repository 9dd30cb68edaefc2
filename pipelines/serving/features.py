"""Online features of entities: Feast's online store read through the model's feature
service, as Python values, so a request of a few rows is scored without building Arrow.

`FeatureStore.get_online_features` resolves the service, reads each feature view with its
online store's `online_read` (Redis: the same reads, pipelined across views), then builds
a response proto and converts it back to Python: for one entity the resolving and
rebuilding cost four times the read. A plain service (feature views only, each keyed by
the entity alone; no on-demand views, version tags, join key maps or precomputed vectors)
is resolved by `open_online_features`, and each request calls the same `online_read` and
converts its values with Feast's own `feast_value_type_to_python_type`: the answers are
Feast's, value for value (tests compare them), for the registry as it was resolved (the
service resolves it again with each new champion). Any other service goes through
`get_online_features`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from pipelines.errors import ConfigurationError
from pipelines.ingest.contract import feature_schema
from pipelines.io import feast_store
from pipelines.settings import Settings

FEATURE_TIMESTAMP = "feature_timestamp"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The `Value` field an entity id goes in, by the entity's type in the project.
_ID_FIELDS = {"int64": "int64_val", "string": "string_val"}


@dataclass(frozen=True)
class ViewRead:
    """One feature view of the service: the view (with the service's projection) and the
    features the service asks of it, with their Feast value types."""

    view: Any
    features: tuple[str, ...]
    types: dict[str, Any]


@dataclass(frozen=True)
class OnlineFeatures:
    """The online store and the model's feature service, resolved for reading."""

    store: Any
    service: Any
    schema: pa.Schema  # the types the features have in the nightly partitions
    entity: str  # the entity's join key
    id_field: str  # the `Value` field of an id
    ttl: timedelta
    views: tuple[ViewRead, ...] | None  # None: read through `get_online_features`


@dataclass(frozen=True)
class EntityFeatures:
    """Entities' latest materialized features, in the order asked."""

    ids: list[Any]
    times: list[datetime | None]  # each entity's feature event time; None: none stored
    values: dict[str, list[Any]]  # each feature's values (None: null or not found)


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
    entity = project.entity.column
    views = _plain_views(store, service, entity)
    id_field = _ID_FIELDS[project.entity.type]
    schema = feature_schema(project)
    return OnlineFeatures(store, service, schema, entity, id_field, ttl, views)


def _plain_views(store: Any, service: Any, entity: str) -> tuple[ViewRead, ...] | None:
    """The service's feature views, each keyed by `entity` alone, if the service is plain
    (see the module's doc); None otherwise."""
    from feast.errors import FeatureViewNotFoundException

    if getattr(service, "precompute_online", False):
        return None
    views = []
    for projection in service.feature_view_projections:
        if projection.version_tag is not None or projection.join_key_map:
            return None
        try:
            view = store.get_feature_view(projection.name)  # not an on-demand view
        except FeatureViewNotFoundException:
            return None
        if [column.name for column in view.entity_columns] != [entity]:
            return None
        names = tuple(field.name for field in projection.features)
        types = {field.name: field.dtype.to_value_type() for field in view.features}
        views.append(ViewRead(view.with_projection(projection), names, types))
    every = [name for view in views for name in view.features]
    return tuple(views) if len(set(every)) == len(every) else None


def read(online: OnlineFeatures, ids: Sequence[int | str]) -> EntityFeatures:
    """Each entity's latest materialized features, in the order asked."""
    if online.views is None:
        return _read_through_feast(online, ids)
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type as to_python

    store = online.store
    reader = store._get_provider().online_store  # what `get_online_features` calls
    fields: list[dict[str, Any]] = [{online.id_field: key} for key in ids]
    keys = [EntityKey(join_keys=[online.entity], entity_values=[Value(**f)]) for f in fields]
    times: list[datetime | None] = [None] * len(ids)
    values: dict[str, list[Any]] = {}
    for part in online.views:
        # A fresh list each time: Redis' `online_read` appends its timestamp field to it.
        found = reader.online_read(store.config, part.view, keys, list(part.features))
        for name in part.features:
            kind = part.types[name]
            values[name] = [
                to_python(row[name], kind) if row and name in row else None for _, row in found
            ]
        times = [_later(time, stamp) for time, (stamp, _) in zip(times, found, strict=True)]
    return EntityFeatures(list(ids), times, values)


def _later(time: datetime | None, stamp: datetime | None) -> datetime | None:
    """The later of two feature times (a naive one is UTC, as Feast takes it); the epoch or
    earlier stands for none (Redis answers a missing entity with empty values at time 0)."""
    if stamp is not None and stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    if stamp is None or stamp <= _EPOCH:
        return time
    return stamp if time is None or stamp > time else time


def _read_through_feast(online: OnlineFeatures, ids: Sequence[int | str]) -> EntityFeatures:
    """`read` by `get_online_features`, for a service this module does not resolve."""
    response = online.store.get_online_features(
        features=online.service, entity_rows=[{online.entity: key} for key in ids]
    )
    values = response.to_dict()
    values.pop(online.entity, None)
    times: list[datetime | None] = [None] * len(ids)
    for vector in response.proto.results:
        stamps = [stamp.ToDatetime(UTC) for stamp in vector.event_timestamps]
        times = [_later(time, stamp) for time, stamp in zip(times, stamps, strict=True)]
    return EntityFeatures(list(ids), times, values)


def fresh(online: OnlineFeatures, rows: EntityFeatures, as_of: datetime) -> list[bool]:
    """Which rows have features within the feature view's TTL before `as_of`, the window
    batch scoring reads from (a row newer than `as_of` counts as fresh)."""
    oldest = as_of - online.ttl
    return [time is not None and time >= oldest for time in rows.times]
