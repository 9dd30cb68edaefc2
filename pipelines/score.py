"""Nightly batch scoring: shard planning, scoring one shard, publishing one partition.

Features are read point-in-time through the model's Feast feature service, with
the semantics of Feast's `get_historical_features` for an entity timestamp T
(the midnight after the scored day, exactly as training labels are stamped):
per customer, the latest row with T - ttl <= ts <= T. Like materialization,
only the partitions inside that window are read, and a shard reads only its
range of customers (validated files are sorted by entity in small row groups),
so a shard's memory depends on the shard, not on the customer base.

Output is deterministic: the same features and model give byte-identical files.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines import faults, features, lake, promote, tracking
from pipelines.errors import NoChampionError, NoFeaturesError, RerunError
from pipelines.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringPlan:
    """What one night's scoring uses, fixed once at the start (JSON-friendly)."""

    day: str
    as_of: str
    model_name: str
    model_version: str
    model_run_id: str
    model_uri: str
    scoring_run_id: str
    feature_ttl_seconds: float
    partitions: list[str]
    shards: list[dict[str, int]]


def as_of(day: date) -> datetime:
    """Feature time of a night's predictions: the midnight after the scored day."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def _window_files(settings: Settings, at: datetime, ttl: timedelta) -> list[Path]:
    return features.partition_files(settings, at - ttl, at)


def scoring_run_id(day: date, model_name: str, version: str, model_run_id: str) -> str:
    """An id derived from the inputs, so re-scoring the same inputs writes the same bytes."""
    key = f"{day.isoformat()}|{model_name}|{version}|{model_run_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _entity_ranges(path: Path, entity: str) -> np.ndarray | None:
    """Each row group's (least entity, greatest entity, rows), from the file's statistics.

    None unless every row group has signed integer statistics and the groups are in ascending,
    non-overlapping order, as in a file sorted by entity (validated files are).
    """
    parquet = pq.ParquetFile(path)
    if not pa.types.is_signed_integer(parquet.schema_arrow.field(entity).type):
        return None
    at = parquet.schema_arrow.get_field_index(entity)
    ranges = []
    for index in range(parquet.metadata.num_row_groups):
        group = parquet.metadata.row_group(index)
        stats = group.column(at).statistics
        if group.num_rows == 0:
            continue
        if stats is None or not stats.has_min_max or stats.null_count:
            return None
        ranges.append((stats.min, stats.max, group.num_rows))
    found = np.array(ranges, dtype=np.int64).reshape(-1, 3)
    if bool(np.any(found[1:, 0] <= found[:-1, 1])):
        return None
    return found


def _customers_below(found: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Estimated distinct customers below each edge of the files' row groups.

    Between two consecutive edges each file holds customers at its row group's density
    (rows over the span of ids it covers). Files are taken as independent draws of ids,
    so a span of n ids held at densities d1, d2, ... holds n * (1 - prod(1 - d))
    customers: exact for daily snapshots of dense ids, close under random churn. Edges
    are Python integers: the edge after the greatest id may be 2**63, beyond int64.
    """
    bounds = [
        np.r_[ranges[:, 0].astype(object), ranges[:, 1].astype(object) + 1] for ranges in found
    ]
    edges = np.unique(np.concatenate(bounds))
    inner = edges[:-1].astype(np.int64)
    spans = np.diff(edges).astype(np.float64)
    missed = np.ones(len(spans))
    for ranges in found:
        group = np.searchsorted(ranges[:, 0], inner, side="right") - 1
        inside = (group >= 0) & (inner <= ranges[np.maximum(group, 0), 1])
        widths = ranges[:, 1].astype(np.float64) - ranges[:, 0].astype(np.float64) + 1
        density = ranges[:, 2] / widths
        missed *= 1 - np.where(inside, np.minimum(density[np.maximum(group, 0)], 1.0), 0.0)
    return edges, np.r_[0.0, np.cumsum(spans * (1 - missed))]


def _shards_from_statistics(
    files: list[Path], entity: str, shard_rows: int, max_shards: int
) -> list[dict[str, int]] | None:
    """Ranges of customers cut from row-group statistics alone, without reading a row.

    The distinct customers are estimated from the statistics (`_customers_below`): their
    total sets the shard count, and the ranges hold equal parts of them. None when a
    file's statistics cannot bound its customers.
    """
    found = [_entity_ranges(path, entity) for path in files]
    if any(ranges is None for ranges in found):
        return None
    found = [ranges for ranges in found if len(ranges)]
    if not found:
        return []
    edges, below = _customers_below(found)
    total = below[-1]
    count = min(max_shards, max(1, math.ceil(round(total) / shard_rows)))
    # Interpolated in floats (whose steps near 2**63 are 2,048 ids): a cut is only where a
    # shard ends, so it may be off by that much; it stays an integer inside the range.
    cuts = np.interp(total * np.arange(1, count) / count, below, edges.astype(np.float64))
    least, greatest = int(edges[0]), int(edges[-1]) - 1
    starts = [least, *sorted({int(cut) for cut in np.floor(cuts) if least < int(cut) <= greatest})]
    lasts = [start - 1 for start in starts[1:]] + [greatest]
    return [
        {"index": index, "first": first, "last": last}
        for index, (first, last) in enumerate(zip(starts, lasts, strict=True))
    ]


def _shards_in_memory(
    files: list[Path], entity: str, shard_rows: int, max_shards: int
) -> list[dict[str, int]]:
    """Equal ranges of every distinct customer, read into memory (for files whose
    statistics cannot bound their customers)."""
    ids = pc.unique(
        ds.dataset([str(f) for f in files], format="parquet").to_table(columns=[entity])[entity]
    ).sort()
    count = min(max_shards, max(1, math.ceil(len(ids) / shard_rows)))
    bounds = np.array_split(ids.to_numpy(), count)
    return [
        {"index": i, "first": int(part[0]), "last": int(part[-1])}
        for i, part in enumerate(bounds)
        if len(part)
    ]


def plan(settings: Settings, day: date, alias: str = promote.CHAMPION) -> ScoringPlan:
    """Resolve the model version once and split the night's customers into shards."""
    version = promote.alias_version(settings, alias)
    name = settings.training.model_name
    if version is None:
        raise NoChampionError(
            f"registered model '{name}' has no '{alias}' alias: train and promote a model "
            "first (the `training` DAG or `python -m pipelines train`)"
        )
    client = tracking.mlflow_client(settings)
    run_id = client.get_model_version(name, version).run_id
    # Where the version's files are: shards load them without asking the registry again.
    model_uri = client.get_model_version_download_uri(name, version)
    store = features.feature_store(settings)
    ttl = store.get_feature_view(settings.dataset.feature_view).ttl
    at = as_of(day)
    files = _window_files(settings, at, ttl)
    if not files:
        raise NoFeaturesError(f"no validated features within {ttl} before {at.isoformat()}")
    entity, sizing = settings.dataset.entity, settings.scoring
    shards = _shards_from_statistics(files, entity, sizing.shard_rows, sizing.max_shards)
    if shards is None:
        shards = _shards_in_memory(files, entity, sizing.shard_rows, sizing.max_shards)
    planned = ScoringPlan(
        day=day.isoformat(),
        as_of=at.isoformat(),
        model_name=name,
        model_version=version,
        model_run_id=run_id,
        model_uri=model_uri,
        scoring_run_id=scoring_run_id(day, name, version, run_id),
        feature_ttl_seconds=ttl.total_seconds(),
        partitions=[path.parent.name for path in files],
        shards=shards,
    )
    faults.crash_here(settings, "scoring.planned")
    return planned


def shard_features(
    settings: Settings, scoring: ScoringPlan, first: int, last: int, columns: list[str]
) -> pa.Table:
    """Point-in-time features of customers first..last: latest row with T - ttl <= ts <= T.

    Text features come dictionary-encoded, as the files store them.
    """
    names = settings.dataset
    at = datetime.fromisoformat(scoring.as_of)
    ttl = timedelta(seconds=scoring.feature_ttl_seconds)
    return features.latest_rows(
        _window_files(settings, at, ttl),
        names.entity,
        names.timestamp,
        columns,
        at - ttl,
        at,
        entities=(first, last),
        text_as_dictionary=True,
    )


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
    encode as NaN (as `train.fit` builds it); None for any other encoder."""
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

    Known for the pipeline `train.fit` builds (text ordinal-encoded, the rest passed
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


def _constant(value: str, count: int) -> pa.Array:
    """`value` on every row, as one dictionary entry (published as a plain string column)."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(count, dtype=np.int32)), pa.array([value], pa.string())
    )


def staged_table(settings: Settings, rows: pa.Table, scores: np.ndarray) -> pa.Table:
    """What a shard stages: keys, scores as the model gives them, feature timestamps.

    The rest of a published row follows from these and the plan (`predictions_table`).
    """
    names = settings.dataset
    return pa.table(
        {
            names.entity: rows.column(names.entity),
            settings.scoring.score_column: pa.array(scores),
            "feature_timestamp": rows.column(names.timestamp),
        }
    )


def predictions_table(settings: Settings, scoring: ScoringPlan, staged: pa.Table) -> pa.Table:
    """The published columns of staged rows: keys, score, decision and lineage."""
    names, out = settings.dataset, settings.scoring
    count = staged.num_rows
    scores = pc.cast(staged.column(out.score_column), pa.float64())
    return pa.table(
        {
            names.entity: staged.column(names.entity),
            out.score_column: scores,
            out.predicted_label_column: pc.greater_equal(scores, out.threshold),
            "model_name": _constant(scoring.model_name, count),
            "model_version": _constant(scoring.model_version, count),
            "model_run_id": _constant(scoring.model_run_id, count),
            "feature_timestamp": staged.column("feature_timestamp"),
            "scoring_run_id": _constant(scoring.scoring_run_id, count),
        }
    )


PREDICTIONS = "predictions"
SHADOW_PREDICTIONS = "predictions_shadow"
LINEAGE_COLUMNS = ["model_name", "model_version", "model_run_id", "scoring_run_id"]
# The published bytes depend on the batches the writer is handed (page cuts happen per
# batch): shards are staged in batches of 128 Ki rows, so the same inputs give the same file.
STAGE_BATCH_ROWS = 131_072


def _parquet_options(settings: Settings, schema: pa.Schema) -> dict[str, Any]:
    """How a predictions file is encoded.

    The lineage columns hold one value each: they are built as dictionaries and the
    writer takes those as they are. Without the Arrow schema in the file's metadata
    readers get them back as plain strings (every other column's type is kept by
    parquet's own logical types). Sorted integer keys are delta-encoded. Scores are
    split into byte streams: a float32 probability widened to float64 leaves whole
    streams of zeros, which compress to nothing. Scores and feature timestamps are
    nearly all distinct, so a dictionary would only be dropped.
    """
    entity = settings.dataset.entity
    encodings = {settings.scoring.score_column: "BYTE_STREAM_SPLIT"}
    if pa.types.is_integer(schema.field(entity).type):
        encodings[entity] = "DELTA_BINARY_PACKED"
    return {
        "compression": "zstd",
        "store_schema": False,
        "use_dictionary": LINEAGE_COLUMNS,
        "column_encoding": encodings,
    }


def _staging_dir(settings: Settings, dataset: str, scoring: ScoringPlan) -> Path:
    return settings.lake_root / dataset / f".staging-{scoring.scoring_run_id}-date={scoring.day}"


def partition(settings: Settings, dataset: str, day: date) -> Path:
    """The published predictions file of a night."""
    return lake.partition_file(settings.lake_root, dataset, day)


def _shard_file(settings: Settings, dataset: str, scoring: ScoringPlan, index: int) -> Path:
    return _staging_dir(settings, dataset, scoring) / f"shard-{index:05d}.arrow"


def _write_shard(table: pa.Table, target: Path) -> None:
    """Write a shard aside, fsync it, then rename it into place.

    Uncompressed Arrow IPC rather than parquet: only `publish` reads it, memory-mapped,
    with no decoding on the way.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.with_name(f".{target.name}.tmp")
    with pa.OSFile(str(aside), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks(), max_chunksize=STAGE_BATCH_ROWS)
    with open(aside, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(aside, target)


def _read_shard(path: Path) -> pa.Table:
    """A staged shard, memory-mapped: its pages are read as the writer encodes them."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def score_shard(
    settings: Settings, scoring: ScoringPlan, shard: dict[str, int], dataset: str = PREDICTIONS
) -> dict[str, Any]:
    """Score one shard with the planned version; write it aside for `publish`."""
    model = load_model(settings, scoring)
    columns = model_features(model)
    rows = shard_features(settings, scoring, shard["first"], shard["last"], columns)
    scores = predict(model, rows.select(columns))
    table = staged_table(settings, rows, scores)
    target = _shard_file(settings, dataset, scoring, shard["index"])
    _write_shard(table, target)
    faults.crash_here(settings, "scoring.shard_written")
    return {"index": shard["index"], "rows": table.num_rows, "path": str(target)}


def publish(settings: Settings, scoring: ScoringPlan, dataset: str = PREDICTIONS) -> dict[str, Any]:
    """Join the shard files into one partition file and rename it into place.

    Shards are streamed one at a time, so publishing needs no more memory than
    the largest shard. A crash before the rename leaves the previous partition whole.
    """
    staging = _staging_dir(settings, dataset, scoring)
    shard_files = [
        _shard_file(settings, dataset, scoring, shard["index"]) for shard in scoring.shards
    ]
    target = partition(settings, dataset, date.fromisoformat(scoring.day))
    missing = [path.name for path in shard_files if not path.exists()]
    if missing:
        return _published_already(scoring, target, staging, missing)
    joined = staging / "joined.parquet"
    rows = 0
    schema = predictions_table(settings, scoring, _read_shard(shard_files[0])).schema
    with pq.ParquetWriter(joined, schema, **_parquet_options(settings, schema)) as writer:
        for path in shard_files:
            table = predictions_table(settings, scoring, _read_shard(path))
            writer.write_table(table)
            rows += table.num_rows
    with open(joined, "rb") as handle:
        os.fsync(handle.fileno())
    target.parent.mkdir(parents=True, exist_ok=True)
    faults.crash_here(settings, "scoring.joined")
    os.replace(joined, target)
    faults.crash_here(settings, "scoring.renamed")
    shutil.rmtree(staging, ignore_errors=True)
    return {
        "path": str(target),
        "date": scoring.day,
        "model_version": scoring.model_version,
        "rows": rows,
    }


def _published_already(
    scoring: ScoringPlan, target: Path, staging: Path, missing: list[str]
) -> dict[str, Any]:
    """What `publish` gives when it runs again after it succeeded (its shards are gone)."""
    if target.exists():
        published = pq.read_table(target, columns=["scoring_run_id"])
        if published.num_rows and published.column(0)[0].as_py() == scoring.scoring_run_id:
            log.info("%s is already published by this plan: nothing to do", target)
            shutil.rmtree(staging, ignore_errors=True)  # shards a crashed re-run left
            return {
                "path": str(target),
                "date": scoring.day,
                "model_version": scoring.model_version,
                "rows": published.num_rows,
            }
    raise RerunError(
        f"the scored shards of {scoring.day} are gone ({len(missing)} missing, e.g. "
        f"{missing[0]}) and {target} was not published by this plan: clear `plan` with its "
        "downstream tasks (or trigger the night again), not `publish` alone"
    )


def agreement(settings: Settings, day: date) -> dict[str, float | None]:
    """How the shadow (challenger) predictions of a night agree with the champion's.

    A measure that is undefined (the rank correlation of a constant model's scores) is
    None: a NaN would fail the task's JSON result and the MLflow metric alike.
    """
    from scipy.stats import spearmanr

    names, out = settings.dataset, settings.scoring
    columns = [names.entity, out.score_column, out.predicted_label_column]
    champion = pq.read_table(partition(settings, PREDICTIONS, day), columns=columns).to_pandas()
    shadow = pq.read_table(partition(settings, SHADOW_PREDICTIONS, day), columns=columns)
    both = champion.merge(shadow.to_pandas(), on=names.entity, suffixes=("", "_shadow"))
    scores, shadow_scores = both[out.score_column], both[f"{out.score_column}_shadow"]
    labels = both[out.predicted_label_column]
    constant = scores.nunique() < 2 or shadow_scores.nunique() < 2
    measures = {
        "rows_compared": float(len(both)),
        "rank_correlation": None if constant else spearmanr(scores, shadow_scores).statistic,
        "mean_absolute_difference": (scores - shadow_scores).abs().mean(),
        "flipped_label_share": (labels != both[f"{out.predicted_label_column}_shadow"]).mean(),
    }
    return {
        name: float(value) if value is not None and math.isfinite(value) else None
        for name, value in measures.items()
    }


def shadow_score(settings: Settings, champion: ScoringPlan) -> dict[str, Any]:
    """Score the challenger (if any) beside the champion and log their agreement to MLflow."""
    import mlflow

    day = date.fromisoformat(champion.day)
    challenger = promote.alias_version(settings, promote.CHALLENGER)
    if not settings.scoring.shadow or challenger is None:
        return {"status": "skipped", "reason": "no challenger" if challenger is None else "off"}
    scoring = plan(settings, day, promote.CHALLENGER)
    for shard in scoring.shards:
        score_shard(settings, scoring, shard, SHADOW_PREDICTIONS)
    published = publish(settings, scoring, SHADOW_PREDICTIONS)
    metrics = agreement(settings, day)
    experiment = tracking.experiment_id(settings, f"{settings.training.model_name}-shadow")
    with mlflow.start_run(experiment_id=experiment, run_name=f"shadow-{champion.day}"):
        mlflow.set_tags(
            {
                "date": champion.day,
                "champion_version": champion.model_version,
                "challenger_version": scoring.model_version,
            }
        )
        mlflow.log_metrics({name: value for name, value in metrics.items() if value is not None})
    return {"status": "scored", "challenger_version": scoring.model_version, **published, **metrics}
