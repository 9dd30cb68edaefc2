"""Scoring rows with a registered model: the fast encoded path and the pipeline's own."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.io import tracking
from pipelines.scoring.sharding import ScoringPlan
from pipelines.settings import Settings

log = logging.getLogger(__name__)


def load_model(settings: Settings, scoring: ScoringPlan) -> Any:
    """The scikit-learn pipeline of the planned version (not the alias: it may move)."""
    import mlflow

    tracking.mlflow_client(settings)
    return mlflow.sklearn.load_model(scoring.model_uri)


def model_features(model: Any) -> list[str]:
    """Input columns the model was trained on, in order."""
    return list(model.feature_names_in_)


Layout = list[tuple[str, pa.Array | None]]


def _is_passthrough(transformer: Any) -> bool:
    from sklearn.preprocessing import FunctionTransformer

    if isinstance(transformer, str):
        return transformer == "passthrough"
    return isinstance(transformer, FunctionTransformer) and transformer.func is None


def _ordinal_categories(transformer: Any) -> list[pa.Array] | None:
    """An OrdinalEncoder's learned text categories, if unknown and missing values both
    encode as NaN (as `training.fitting.fit` builds it); None for any other encoder."""
    from sklearn.preprocessing import OrdinalEncoder

    plain = (
        isinstance(transformer, OrdinalEncoder)
        and transformer.handle_unknown == "use_encoded_value"
        and np.isnan(transformer.unknown_value)
        and np.isnan(transformer.encoded_missing_value)
        and transformer.max_categories is None
        and transformer.min_frequency is None
        and transformer.dtype in (float, np.float64)
    )
    if not plain:
        return None
    found = []
    for categories in transformer.categories_:
        # A missing value learned as a category still encodes as NaN (encoded_missing_value).
        text = [value for value in categories if isinstance(value, str)]
        if len(text) != len(categories) - (1 if pd.isna(categories[-1]) else 0):
            return None
        found.append(pa.array(text, pa.string()))
    return found


def encoder_layout(model: Any) -> Layout | None:
    """The encoder's output columns in order: (input column, categories when ordinal-encoded).

    Known for the pipeline `training.fitting.fit` builds (text ordinal-encoded, the rest passed
    through, then XGBoost); None for any other model, which is then run as is.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    if not (isinstance(model, Pipeline) and len(model.steps) == 2):
        return None
    encoder, classifier = model.steps[0][1], model.steps[1][1]
    if not (isinstance(encoder, ColumnTransformer) and isinstance(classifier, XGBClassifier)):
        return None
    if encoder.sparse_output_:
        return None
    layout: Layout = []
    for _, transformer, columns in encoder.transformers_:
        if transformer == "drop" or len(columns) == 0:
            continue
        if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
            return None
        if _is_passthrough(transformer):
            layout.extend((column, None) for column in columns)
            continue
        categories = _ordinal_categories(transformer)
        if categories is None:
            return None
        layout.extend(zip(columns, categories, strict=True))
    return layout


def _codes(values: pa.ChunkedArray, categories: pa.Array) -> pa.ChunkedArray:
    """Each value's index among the categories (null when unknown or missing).

    A dictionary-encoded chunk looks up its few distinct values once, then takes
    the codes of its indices.
    """
    if not pa.types.is_dictionary(values.type):
        return pc.index_in(values, value_set=categories)
    return pa.chunked_array(
        [
            pc.take(pc.index_in(chunk.dictionary, value_set=categories), chunk.indices)
            for chunk in values.chunks
        ],
        pa.int32(),
    )


def encode(rows: pa.Table, layout: Layout) -> np.ndarray:
    """The encoder's output for `rows` straight from Arrow: the same float64 values.

    A category's code is its index among the learned categories; unknown and
    missing values are NaN, as the OrdinalEncoder gives them; other columns are
    cast as numpy casts them (nulls become NaN, as in pandas).
    """
    # Filled feature by feature (contiguous writes), handed over as its transpose.
    matrix = np.empty((len(layout), rows.num_rows), dtype=np.float64)
    for index, (name, categories) in enumerate(layout):
        values = rows.column(name)
        if categories is not None:
            values = _codes(values, categories)
        matrix[index] = pc.cast(values, pa.float64(), safe=False).to_numpy()
    return matrix.T


def _plain(rows: pa.Table) -> pa.Table:
    """`rows` with dictionary-encoded columns decoded to their values."""
    return pa.table(
        {
            name: pc.cast(column, column.type.value_type)
            if pa.types.is_dictionary(column.type)
            else column
            for name, column in zip(rows.column_names, rows.columns, strict=True)
        }
    )


def predict(model: Any, rows: pa.Table) -> np.ndarray:
    """Positive-class probabilities of the model for `rows` (its input columns).

    For the pipeline training builds, the rows are encoded from Arrow with the
    encoder's learned categories and handed to the classifier's own predict_proba:
    the same matrix, so the same scores as the pipeline, without pandas or its
    column-by-column transform. Any other model runs as a whole.
    """
    if rows.num_rows == 0:
        return np.empty(0)
    layout = encoder_layout(model)
    if layout is None:
        return model.predict_proba(_plain(rows).to_pandas())[:, 1]
    return model.steps[-1][1].predict_proba(encode(rows, layout))[:, 1]
