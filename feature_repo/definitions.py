"""All Feast objects of the repository, built from one settings object."""

from typing import Any

from feature_repo import data_sources, entities, feature_services, feature_views
from pipelines.settings import Settings


def build(settings: Settings) -> list[Any]:
    """Every object `feast apply` registers, in dependency order."""
    customer = entities.customer(settings)
    activity = data_sources.activity(settings)
    activity_view = feature_views.customer_activity(settings, customer, activity)
    return [
        customer,
        activity,
        activity_view,
        feature_services.churn_model(settings, activity_view),
    ]
