"""Feature services: the exact feature set a model trains and scores on."""

from feast import FeatureService, FeatureView

from pipelines.settings import Settings


def model_service(settings: Settings, view: FeatureView) -> FeatureService:
    """The model's features; training and scoring both read through it."""
    project = settings.project
    features = list(project.features)
    selected = view if features == [field.name for field in view.features] else view[features]
    return FeatureService(
        name=project.model.feature_service,
        features=[selected],
        description=project.model.description,
    )
