"""Entities: the keys features are joined on."""

from feast import Entity, ValueType

from pipelines.settings import Settings


def customer(settings: Settings) -> Entity:
    """The subscriber whose churn we predict."""
    return Entity(
        name="customer",
        join_keys=[settings.dataset.entity],
        value_type=ValueType.INT64,
        description="A subscriber of the service.",
    )
