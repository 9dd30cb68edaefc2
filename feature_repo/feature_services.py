"""Feature services: the exact feature set a model trains and scores on."""

from feast import FeatureService, FeatureView

from pipelines.settings import Settings


def churn_model(settings: Settings, activity_view: FeatureView) -> FeatureService:
    """Features of the churn model; training and scoring both read through it."""
    return FeatureService(
        name=settings.dataset.feature_service,
        features=[activity_view],
        description="Every feature the churn model consumes.",
    )
