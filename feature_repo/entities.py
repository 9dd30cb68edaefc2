"""Entities: the keys features are joined on."""

from feast import Entity, ValueType

from pipelines.settings import Settings

VALUE_TYPES = {"int64": ValueType.INT64, "string": ValueType.STRING}


def entity(settings: Settings) -> Entity:
    """The project's entity, joined on its key column."""
    declared = settings.project.entity
    return Entity(
        name=declared.name,
        join_keys=[declared.column],
        value_type=VALUE_TYPES[declared.type],
        description=declared.description,
    )
