"""`project init`: a first `project.yaml` inferred from a sample parquet file.

Types, ranges and categories come from the sample; the entity is the first `*_id`
column, the timestamp the first timestamp column; a sample with one row per entity per
day is a snapshot source, anything else events (with count, sum and day-count features
over 7, 30 and 90 days). It is a start to review, not a finished contract: the file
says so at its top.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from pydantic import ValidationError

from pipelines.errors import ConfigurationError
from pipelines.project import PROJECT_FILE, PROJECTS_ROOT, Project

# A text column with at most this many distinct values in the sample is categorical.
MAX_CATEGORIES = 20
DEMO_HYPERPARAMETERS = {
    "n_estimators": 400,
    "max_depth": 4,
    "learning_rate": 0.08,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "min_child_weight": 5,
    "reg_lambda": 1.0,
    "early_stopping_rounds": 30,
}


def _kind(field: pa.Field) -> str | None:
    """The contract type of an Arrow type (None: not a type the contract holds)."""
    kind = field.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_integer(kind):
        return "int64"
    if pa.types.is_floating(kind):
        return "float64"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "timestamp"
    return None


def _widened(value: float) -> int:
    """A bound ten times beyond the sample's order of magnitude: one day's extremes are not
    the data's (e.g. 895 gives 10,000; -3.5 gives -100)."""
    magnitude = 10 ** (math.ceil(math.log10(abs(value) + 1)) + 1)
    return int(math.copysign(magnitude, value))


def _null_share(column: pa.ChunkedArray) -> float:
    """The sample's null share, rounded up to whole percents (0 when it has none)."""
    share = column.null_count / max(len(column), 1)
    return 0.0 if share == 0 else min(1.0, math.ceil(share * 100) / 100)


def infer_column(name: str, column: pa.ChunkedArray, kind: str) -> dict[str, Any]:
    """A column's declaration: type, observed range or categories, null share."""
    spec: dict[str, Any] = {"type": kind}
    if kind in ("int64", "float64") and column.null_count < len(column):
        bounds = pc.min_max(column)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        spec |= {"min": _widened(low) if low < 0 else 0, "max": _widened(high)}
    if kind == "string":
        distinct = pc.unique(column.combine_chunks().cast(pa.string())).drop_null()
        if len(distinct) <= MAX_CATEGORIES:
            spec["categories"] = sorted(distinct.to_pylist())
    if share := _null_share(column):
        spec["max_null_share"] = share
    return spec


def _entity_and_timestamp(table: pa.Table) -> tuple[str, str]:
    kinds = {field.name: _kind(field) for field in table.schema}
    timestamps = [name for name, kind in kinds.items() if kind == "timestamp"]
    if not timestamps:
        raise ConfigurationError("the sample has no timestamp or date column to date its rows")
    ids = [n for n in table.column_names if n.lower().endswith("_id") or n.lower() == "id"]
    keys = [n for n in ids or table.column_names if kinds[n] in ("int64", "string")]
    if not keys:
        raise ConfigurationError("the sample has no integer or text column to be the entity key")
    return keys[0], timestamps[0]


def _is_snapshot(table: pa.Table, entity: str, timestamp: str) -> bool:
    """One row per entity per day in the sample."""
    days = pc.cast(pc.cast(table.column(timestamp), pa.timestamp("s"), safe=False), pa.date32())
    keyed = pa.table({"key": table.column(entity), "day": days})
    return keyed.group_by(["key", "day"]).aggregate([]).num_rows == table.num_rows


def _event_aggregations(columns: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Counts, sums and means over 7, 30 and 90 days, and the days since the first and
    last events: a start."""
    features: dict[str, Any] = {}
    windows = {"d7": 7, "d30": 30, "d90": 90}
    for window in windows:
        features[f"events_{window}"] = {"function": "count", "window": window}
    for name, spec in columns.items():
        if spec["type"] in ("int64", "float64"):
            features[f"{name}_sum_d30"] = {"function": "sum", "column": name, "window": "d30"}
            features[f"{name}_mean_d90"] = {"function": "mean", "column": name, "window": "d90"}
    features["days_since_first"] = {"function": "days_since_first"}
    features["days_since_last"] = {"function": "days_since_last"}
    return {"windows": windows, "active_days": 90, "features": features}


def scaffold(name: str, table: pa.Table, dataset: str) -> dict[str, Any]:
    """A project document inferred from a sample table."""
    entity, timestamp = _entity_and_timestamp(table)
    columns = {
        field.name: infer_column(field.name, table.column(field.name), kind)
        for field in table.schema
        if field.name not in (entity, timestamp) and (kind := _kind(field)) is not None
    }
    snapshot = _is_snapshot(table, entity, timestamp)
    document: dict[str, Any] = {
        "name": name,
        "entity": {
            "name": entity.removesuffix("_id") or "entity",
            "column": entity,
            "type": _kind(table.schema.field(entity)),
        },
        "source": {
            "dataset": dataset,
            "shape": "snapshot" if snapshot else "events",
            "timestamp": timestamp,
            "timezone": "UTC",
            "feature_view": f"{name}_{dataset}",
            "columns": columns,
        },
    }
    if snapshot:
        document["label"] = {"dataset": "labels", "column": "label"}
    else:
        document["aggregations"] = _event_aggregations(columns)
        document["label"] = {"column": "event_within_30d", "derived": {"event_within_days": 30}}
    document["model"] = {
        "name": name,
        "feature_service": f"{name}_v1",
        "hyperparameters": DEMO_HYPERPARAMETERS,
        "gate": [
            {
                "metric": "roc_auc",
                "greater_is_better": True,
                "threshold": 0.65,
                "min_absolute_change": 0.0,
            },
            {"metric": "log_loss", "greater_is_better": False, "min_relative_change": 0.0},
        ],
    }
    document["scoring"] = {
        "score_column": f"{name}_probability",
        "predicted_label_column": f"{name}_predicted",
        "threshold": 0.5,
    }
    return document


def init_project(
    name: str, sample: Path, dataset: str | None = None, root: Path = PROJECTS_ROOT
) -> Path:
    """Write `<root>/<name>/project.yaml` inferred from a sample parquet file (never over
    an existing one), checked as any project is."""
    target = root / name / PROJECT_FILE
    if target.exists():
        raise ConfigurationError(f"{target} exists: edit it, or pick another name")
    stem = re.sub(r"\W+", "_", sample.stem.split(".")[0]).strip("_") or "events"
    document = scaffold(name, pq.read_table(sample), dataset or stem)
    try:
        Project.model_validate(document)
    except ValidationError as error:
        raise ConfigurationError(f"cannot scaffold {name!r}: {error}") from None
    header = (
        f"# Scaffolded from {sample.name} by `python -m pipelines project init`: types, ranges\n"
        "# and categories are the sample's. Review every field (the label above all) before\n"
        '# the first night; README "Bring your own data" says what each one means.\n'
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + yaml.safe_dump(document, sort_keys=False))
    return target
