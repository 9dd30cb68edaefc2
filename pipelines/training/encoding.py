"""The model's declared encoding: how its input columns become the classifier's matrix.

Training records it as data with the model (in the MLmodel file's metadata), so scoring
encodes rows straight from Arrow by reading the declaration, never by inspecting the
fitted pipeline: a text column becomes its value's index among the learned categories
(unknown and missing: NaN), any other column float64 (null: NaN), in the declared order.
The result is the matrix the pipeline's own encoder gives, value for value.

`encode_values` builds the same matrix from Python values, for the online service's few
rows a request: there, building Arrow arrays costs more than the encoding itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The key of the declaration in the model's MLflow metadata.
METADATA_KEY = "encoding"


@dataclass(frozen=True)
class ModelEncoding:
    """The model's input columns, the classifier's columns in order, and the learned
    categories (in code order) of the categorical ones."""

    inputs: list[str]
    outputs: list[str]
    categories: dict[str, list[str]]

    @cached_property
    def codes(self) -> dict[str, dict[str, int]]:
        """Each categorical column's code of each category (its first place, as
        `pc.index_in` finds it)."""
        return {
            name: {value: code for code, value in reversed(list(enumerate(values)))}
            for name, values in self.categories.items()
        }

    def to_metadata(self) -> dict[str, Any]:
        """The declaration as the model's MLflow metadata holds it."""
        return {
            METADATA_KEY: {
                "inputs": self.inputs,
                "outputs": self.outputs,
                "categories": self.categories,
            }
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> ModelEncoding | None:
        """The declaration a model's metadata holds; None for a model registered without."""
        declared = (metadata or {}).get(METADATA_KEY)
        if declared is None:
            return None
        return cls(declared["inputs"], declared["outputs"], declared["categories"])


def declare(encoder: Any, inputs: list[str], categorical: list[str]) -> ModelEncoding:
    """The encoding a fitted `ColumnTransformer` applies: ordinal-encoded `categorical`
    columns (learned text categories; a missing value learned as a category stays NaN),
    the other inputs passed through."""
    # Without categorical columns the encoder skips its ordinal step (left unfitted).
    fitted = encoder.named_transformers_["categories"].categories_ if categorical else []
    learned = {
        column: [value for value in values if isinstance(value, str)]
        for column, values in zip(categorical, fitted, strict=True)
    }
    return ModelEncoding(inputs, list(encoder.get_feature_names_out()), learned)


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


def encode(rows: pa.Table, encoding: ModelEncoding) -> np.ndarray:
    """The classifier's matrix for `rows`, straight from Arrow."""
    # Filled feature by feature (contiguous writes), handed over as its transpose.
    matrix = np.empty((len(encoding.outputs), rows.num_rows), dtype=np.float64)
    for index, name in enumerate(encoding.outputs):
        values = rows.column(name)
        if name in encoding.categories:
            values = _codes(values, pa.array(encoding.categories[name], pa.string()))
        matrix[index] = pc.cast(values, pa.float64(), safe=False).to_numpy()
    return matrix.T


def encode_values(columns: Mapping[str, Sequence[Any]], encoding: ModelEncoding) -> np.ndarray:
    """`encode` of rows given as Python values (None: null), column by column: the same
    matrix, value for value (integers round to the nearest double as Arrow's cast does)."""
    rows = len(columns[encoding.outputs[0]]) if encoding.outputs else 0
    matrix = np.empty((len(encoding.outputs), rows), dtype=np.float64)
    for index, name in enumerate(encoding.outputs):
        values = columns[name]
        codes = encoding.codes.get(name)
        if codes is not None:
            values = [codes.get(value) if isinstance(value, str) else None for value in values]
        matrix[index] = [np.nan if value is None else float(value) for value in values]
    return matrix.T
