"""All Feast objects of the repository, built from one settings object."""

from typing import Any

from feature_repo import data_sources, entities, feature_services, feature_views
from pipelines.settings import Settings


def build(settings: Settings) -> list[Any]:
    """Every object `feast apply` registers, in dependency order."""
    entity = entities.entity(settings)
    source = data_sources.validated_source(settings)
    view = feature_views.source_view(settings, entity, source)
    return [entity, source, view, feature_services.model_service(settings, view)]
