"""Module-level objects for the `feast` CLI, built from the environment's settings.

    feast -c feature_repo -f .state/feast/feature_store.yaml plan

The pipeline itself applies `definitions.build(settings)`; it never needs this module.
"""

from feature_repo.definitions import build
from pipelines.settings import load_settings

entity, validated_source, source_view, model_service = build(load_settings())
