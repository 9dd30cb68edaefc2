"""The data contract derived from the project: the Arrow schema published files have, and
the Great Expectations suites that check a landed partition and a training set.

Suites are plain GE 1.x JSON documents with ids derived from their content's place, so
rendering the same project twice gives the same bytes (no UUIDs by hand, no churn).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from pipelines.ingest.conform import TIMESTAMP
from pipelines.project import ColumnSpec, Project

# Per contract type: its Arrow type in the lake, and its dtypes once read into pandas
# (none for timestamps: GE cannot name a zoned dtype, and conforming already cast them).
ARROW_TYPES: Mapping[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": TIMESTAMP,
}
PANDAS_TYPES: Mapping[str, list[str]] = {
    "int64": ["int64"],
    "float64": ["float64"],
    "string": ["object", "str", "string"],
    "bool": ["bool"],
}
_IDS = uuid.UUID("6f1d8a52-3c4e-4b7a-9a51-0c2f5e7d9b11")


def arrow_schema(project: Project) -> pa.Schema:
    """Columns of a published partition, in order: the key, the timestamp, the source's."""
    columns = project.source.columns
    return pa.schema(
        [
            pa.field(project.entity.column, ARROW_TYPES[project.entity.type]),
            pa.field(project.source.timestamp, TIMESTAMP),
            *(pa.field(name, ARROW_TYPES[spec.type]) for name, spec in columns.items()),
        ]
    )


def feature_schema(project: Project) -> pa.Schema:
    """Columns of a nightly feature partition: the key, the timestamp, the features."""
    return pa.schema(
        [
            pa.field(project.entity.column, ARROW_TYPES[project.entity.type]),
            pa.field(project.source.timestamp, TIMESTAMP),
            *(pa.field(name, ARROW_TYPES[kind]) for name, kind in project.feature_columns.items()),
        ]
    )


def _expectation(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs}


def _parameter(name: str) -> dict[str, str]:
    return {"$PARAMETER": name}


def _range_rules(columns: Mapping[str, ColumnSpec]) -> list[dict[str, Any]]:
    """A between-expectation for each column declared with a min or a max."""
    rules = []
    for name, spec in columns.items():
        bounds = {"max_value": spec.max, "min_value": spec.min}
        bounds = {key: value for key, value in bounds.items() if value is not None}
        if bounds:
            rules.append(_expectation("expect_column_values_to_be_between", column=name, **bounds))
    return rules


def _category_rules(columns: Mapping[str, ColumnSpec]) -> list[dict[str, Any]]:
    """An in-set expectation for each column declared with categories."""
    return [
        _expectation(
            "expect_column_values_to_be_in_set", column=name, value_set=list(spec.categories)
        )
        for name, spec in columns.items()
        if spec.categories is not None
    ]


def raw_partition_expectations(project: Project) -> list[dict[str, Any]]:
    """What one landed partition must satisfy: columns, types, nulls, one row per entity,
    its day, ranges and categories (row-count and day bounds are run-time parameters)."""
    key, timestamp = project.entity.column, project.source.timestamp
    columns = project.source.columns
    expectations = [
        _expectation(
            "expect_table_columns_to_match_set",
            column_set=arrow_schema(project).names,
            exact_match=False,
        ),
        _expectation(
            "expect_table_row_count_to_be_between",
            max_value=_parameter("max_rows"),
            min_value=_parameter("min_rows"),
        ),
        _expectation(
            "expect_column_values_to_be_in_type_list",
            column=key,
            type_list=PANDAS_TYPES[project.entity.type],
        ),
    ]
    for name, spec in columns.items():
        if spec.type in PANDAS_TYPES:
            expectations.append(
                _expectation(
                    "expect_column_values_to_be_in_type_list",
                    column=name,
                    type_list=PANDAS_TYPES[spec.type],
                )
            )
    expectations += [
        _expectation("expect_column_values_to_not_be_null", column=key),
        _expectation("expect_column_values_to_not_be_null", column=timestamp),
    ]
    for name, spec in columns.items():
        mostly = {"mostly": 1.0 - spec.max_null_share} if spec.max_null_share else {}
        expectations.append(
            _expectation("expect_column_values_to_not_be_null", column=name, **mostly)
        )
    if project.source.shape == "snapshot":  # one row per entity per day
        expectations.append(_expectation("expect_column_values_to_be_unique", column=key))
    expectations += [
        _expectation(
            "expect_column_values_to_be_between",
            column=timestamp,
            max_value=_parameter("partition_end"),
            min_value=_parameter("partition_start"),
            strict_max=True,
        ),
    ]
    if project.entity.min is not None:
        expectations.append(
            _expectation(
                "expect_column_values_to_be_between", column=key, min_value=project.entity.min
            )
        )
    return expectations + _range_rules(columns) + _category_rules(columns)


def training_set_expectations(project: Project) -> list[dict[str, Any]]:
    """What a point-in-time training set must satisfy before a model sees it."""
    key, timestamp, label = project.entity.column, project.source.timestamp, project.label.column
    return [
        _expectation(
            "expect_table_columns_to_match_set",
            column_set=[key, timestamp, label],
            exact_match=False,
        ),
        _expectation("expect_table_row_count_to_be_between", min_value=_parameter("min_rows")),
        _expectation("expect_column_values_to_not_be_null", column=key),
        _expectation("expect_column_values_to_not_be_null", column=timestamp),
        _expectation("expect_column_values_to_not_be_null", column=label),
        _expectation("expect_column_values_to_be_in_set", column=label, value_set=[0, 1]),
        _expectation(
            "expect_column_mean_to_be_between",
            column=label,
            max_value=_parameter("max_label_share"),
            min_value=_parameter("min_label_share"),
        ),
        _expectation("expect_compound_columns_to_be_unique", column_list=[key, timestamp]),
        # Features come from the point-in-time join: a missing one is null, in every
        # feature of the row at once, so one feature's coverage stands for all.
        _expectation(
            "expect_column_values_to_not_be_null",
            column=project.features[0],
            mostly=_parameter("min_feature_coverage"),
        ),
    ]


def suite_document(
    name: str, notes: str, expectations: list[dict[str, Any]], version: str
) -> dict[str, Any]:
    """A GE 1.x expectation suite as its file store keeps it, with stable ids."""
    return {
        "expectations": [
            {
                "id": str(uuid.uuid5(_IDS, f"{name}/{index}/{item['type']}")),
                "kwargs": item["kwargs"],
                "meta": {},
                "severity": "critical",
                "type": item["type"],
            }
            for index, item in enumerate(expectations)
        ],
        "id": suite_id(name),
        "meta": {"great_expectations_version": version, "notes": notes},
        "name": name,
        "notes": None,
    }


def suite_id(name: str) -> str:
    """The stable id of a suite (and, suffixed, of its validation definition and checkpoint)."""
    return str(uuid.uuid5(_IDS, name))
