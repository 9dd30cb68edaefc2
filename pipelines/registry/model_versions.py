"""Registered versions: aliases, resolving them, loading a version and scoring a frame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.errors import PromotionError
from pipelines.io import tracking
from pipelines.settings import Settings


def alias_version(settings: Settings, alias: str) -> str | None:
    """The version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    client = tracking.mlflow_client(settings)
    try:
        return str(client.get_model_version_by_alias(settings.project.model.name, alias).version)
    except MlflowException:
        return None


def score(settings: Settings, version: str, frame: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities of a registered version for the rows of `frame`."""
    import pyarrow as pa

    from pipelines.scoring import predictor

    model = predictor.load_version(settings, f"models:/{settings.project.model.name}/{version}")
    rows = pa.Table.from_pandas(frame[model.inputs], preserve_index=False)
    return predictor.predict(model, rows)


def _require_version(settings: Settings, version: str) -> None:
    from mlflow.exceptions import MlflowException

    name = settings.project.model.name
    try:
        tracking.mlflow_client(settings).get_model_version(name, version)
    except MlflowException as error:
        raise PromotionError(f"{name} v{version} is not a registered version") from error
