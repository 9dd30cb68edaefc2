"""Scored shards, staged aside, then published as one partition with one atomic rename.

Output is deterministic: the same features and model give byte-identical files.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import faults
from pipelines.contracts import PublishedPredictions, ScoredShard, ScoringPlan, Shard, shard_range
from pipelines.errors import RerunError
from pipelines.io import lake
from pipelines.scoring.predictor import ScoringModel, load_model, predict
from pipelines.scoring.sharding import shard_features
from pipelines.settings import Settings

log = logging.getLogger(__name__)


def _constant(value: str, count: int) -> pa.Array:
    """`value` on every row, as one dictionary entry (published as a plain string column)."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(count, dtype=np.int32)), pa.array([value], pa.string())
    )


def staged_table(settings: Settings, rows: pa.Table, scores: np.ndarray) -> pa.Table:
    """What a shard stages: keys, scores as the model gives them, feature timestamps.

    The rest of a published row follows from these and the plan (`predictions_table`).
    """
    names = settings.project
    return pa.table(
        {
            names.entity.column: rows.column(names.entity.column),
            settings.project.scoring.score_column: pa.array(scores),
            "feature_timestamp": rows.column(names.source.timestamp),
        }
    )


def predictions_table(settings: Settings, scoring: ScoringPlan, staged: pa.Table) -> pa.Table:
    """The published columns of staged rows: keys, score, decision and lineage."""
    names = settings.project
    out = names.scoring
    count = staged.num_rows
    scores = pc.cast(staged.column(out.score_column), pa.float64())
    return pa.table(
        {
            names.entity.column: staged.column(names.entity.column),
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
    parquet's own logical types). Sorted keys are delta-encoded (text keys by their shared
    prefixes). Scores are
    split into byte streams: a float32 probability widened to float64 leaves whole
    streams of zeros, which compress to nothing. Scores and feature timestamps are
    nearly all distinct, so a dictionary would only be dropped.
    """
    entity = settings.project.entity.column
    encodings = {settings.project.scoring.score_column: "BYTE_STREAM_SPLIT"}
    if pa.types.is_integer(schema.field(entity).type):
        encodings[entity] = "DELTA_BINARY_PACKED"
    elif pa.types.is_string(schema.field(entity).type):
        encodings[entity] = "DELTA_BYTE_ARRAY"
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


def scored_rows(
    settings: Settings, scoring: ScoringPlan, model: ScoringModel, shard: Shard
) -> pa.Table:
    """What a shard stages (`staged_table`): its customers' point-in-time features scored."""
    columns = model.inputs
    first, bound, included = shard_range(shard)
    rows = shard_features(settings, scoring, first, bound, columns, included)
    return staged_table(settings, rows, predict(model, rows.select(columns)))


def score_shard(
    settings: Settings, scoring: ScoringPlan, shard: Shard, dataset: str = PREDICTIONS
) -> ScoredShard:
    """Score one shard with the planned version; write it aside for `publish`."""
    table = scored_rows(settings, scoring, load_model(settings, scoring), shard)
    target = _shard_file(settings, dataset, scoring, shard["index"])
    _write_shard(table, target)
    faults.crash_here(settings, "scoring.shard_written")
    return ScoredShard(index=shard["index"], rows=table.num_rows, path=str(target))


def publish(
    settings: Settings, scoring: ScoringPlan, dataset: str = PREDICTIONS
) -> PublishedPredictions:
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
    return PublishedPredictions(str(target), scoring.day, scoring.model_version, rows)


def _published_already(
    scoring: ScoringPlan, target: Path, staging: Path, missing: list[str]
) -> PublishedPredictions:
    """What `publish` gives when it runs again after it succeeded (its shards are gone)."""
    if target.exists():
        published = pq.read_table(target, columns=["scoring_run_id"])
        if published.num_rows and published.column(0)[0].as_py() == scoring.scoring_run_id:
            log.info("%s is already published by this plan: nothing to do", target)
            shutil.rmtree(staging, ignore_errors=True)  # shards a crashed re-run left
            return PublishedPredictions(
                str(target), scoring.day, scoring.model_version, published.num_rows
            )
    raise RerunError(
        f"the scored shards of {scoring.day} are gone ({len(missing)} missing, e.g. "
        f"{missing[0]}) and {target} was not published by this plan: clear `plan` with its "
        "downstream tasks (or trigger the night again), not `publish` alone"
    )
