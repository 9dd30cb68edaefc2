"""One `predict` for every caller: the gate, the infra check, scoring, shadow and the bench.

A registered version is loaded with its declared encoding (`training.encoding`): its rows
are encoded straight from Arrow and handed to the classifier's own `predict_proba`, the
same matrix the pipeline's encoder gives, so the same scores without pandas or a
column-by-column transform. `predict_values` scores a request's few rows from Python
values, an XGBoost classifier through its booster: the same scores again. A model
registered without a declaration runs as a whole.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contracts import ScoringPlan
from pipelines.io import tracking
from pipelines.settings import Settings
from pipelines.training.encoding import ModelEncoding, encode, encode_values


@dataclass(frozen=True)
class ScoringModel:
    """A registered model ready to score: its fitted pipeline and declared encoding."""

    pipeline: Any
    encoding: ModelEncoding | None

    @property
    def inputs(self) -> list[str]:
        """Input columns the model was trained on, in order."""
        if self.encoding is not None:
            return self.encoding.inputs
        return list(self.pipeline.feature_names_in_)


def load_version(settings: Settings, model_uri: str) -> ScoringModel:
    """A registered model (by version URI, not alias: an alias may move) and its encoding."""
    import mlflow

    tracking.mlflow_client(settings)
    # One download for both: the MLmodel file's metadata and the pipeline.
    with tempfile.TemporaryDirectory(prefix="model-") as workdir:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=workdir)
        metadata = mlflow.models.Model.load(local).metadata
        pipeline = mlflow.sklearn.load_model(local)
    return ScoringModel(pipeline, ModelEncoding.from_metadata(metadata))


def load_model(settings: Settings, scoring: ScoringPlan) -> ScoringModel:
    """The planned version of a night's scoring."""
    return load_version(settings, scoring.model_uri)


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


def predict(model: ScoringModel, rows: pa.Table) -> np.ndarray:
    """Positive-class probabilities of the model for `rows` (its input columns)."""
    if rows.num_rows == 0:
        return np.empty(0)
    if model.encoding is None:
        return model.pipeline.predict_proba(_plain(rows).to_pandas())[:, 1]
    classifier = model.pipeline.steps[-1][1]
    return classifier.predict_proba(encode(rows, model.encoding))[:, 1]


def predict_values(
    model: ScoringModel, columns: Mapping[str, Sequence[Any]], schema: pa.Schema
) -> np.ndarray:
    """`predict` of rows given as Python values (None: null), for a request's few rows: the
    same scores. A model without a declared encoding gets Arrow columns typed by `schema`."""
    if not len(columns[model.inputs[0]]):
        return np.empty(0)
    if model.encoding is None:
        types = {name: schema.field(name).type for name in model.inputs}
        return predict(model, pa.table({n: pa.array(columns[n], t) for n, t in types.items()}))
    classifier = model.pipeline.steps[-1][1]
    return _positive_probabilities(classifier, encode_values(columns, model.encoding))


def _positive_probabilities(classifier: Any, matrix: np.ndarray) -> np.ndarray:
    """`classifier.predict_proba(matrix)[:, 1]`. An XGBoost binary classifier is asked
    through its booster as its `predict_proba` asks it (the trees up to the best
    iteration, its missing value): the same probabilities, without the wrapper's per-call
    set-up, which cost a one-row request about as much as its 400 trees."""
    from xgboost import XGBClassifier

    if (
        type(classifier) is not XGBClassifier
        or classifier.objective != "binary:logistic"
        or classifier.booster not in (None, "gbtree")
    ):
        return classifier.predict_proba(matrix)[:, 1]
    best = getattr(classifier, "best_iteration", None)  # none without early stopping
    probabilities = classifier.get_booster().inplace_predict(
        matrix,
        iteration_range=(0, 0 if best is None else best + 1),
        missing=classifier.missing,
    )
    if probabilities.ndim != 1:  # multi-label: `predict_proba` keeps every column
        return classifier.predict_proba(matrix)[:, 1]
    return probabilities


def on_one_thread(model: ScoringModel) -> ScoringModel:
    """The model set to predict on one thread, for requests of a few rows: a thread team
    costs more than it saves there and spins against the other requests' work. The scores
    do not change: each row's trees are summed alike whatever the threads."""
    classifier = model.pipeline.steps[-1][1] if model.encoding else model.pipeline
    if "n_jobs" in classifier.get_params():
        classifier.set_params(n_jobs=1)
    return model
