"""Feature views: the feature table's columns of an entity as of a point in time."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource
from feast.types import Bool, Float64, Int64, PrimitiveFeastType, String, UnixTimestamp

from pipelines.settings import Settings

FEAST_TYPES: dict[str, PrimitiveFeastType] = {
    "int64": Int64,
    "float64": Float64,
    "string": String,
    "bool": Bool,
    "timestamp": UnixTimestamp,
}


def source_view(settings: Settings, entity: Entity, source: FileSource) -> FeatureView:
    """Every column of the project's nightly feature table; a value older than the
    project's TTL is too stale to serve."""
    project = settings.project
    declared = project.source
    return FeatureView(
        name=declared.feature_view,
        entities=[entity],
        ttl=timedelta(days=declared.ttl_days),
        schema=[
            Field(name=name, dtype=FEAST_TYPES[kind])
            for name, kind in project.feature_columns.items()
        ],
        source=source,
        online=True,
        description=declared.description,
    )
