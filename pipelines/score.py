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
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines import features, lake, promote, tracking
from pipelines.errors import NoChampionError, NoFeaturesError
from pipelines.settings import Settings


@dataclass(frozen=True)
class ScoringPlan:
    """What one night's scoring uses, fixed once at the start (JSON-friendly)."""

    day: str
    as_of: str
    model_name: str
    model_version: str
    model_run_id: str
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


class _UnsortedFileError(Exception):
    """A window file whose rows are not sorted by entity."""


def _distinct_entities(
    files: list[Path], entity: str, batch_rows: int = 65_536
) -> Iterator[np.ndarray]:
    """Distinct entities of files sorted by entity, ascending, one chunk at a time.

    A k-way merge of the files' entity columns: it holds about one batch per file,
    whatever the number of customers. Raises `_UnsortedFileError` on a file that is
    not sorted.
    """
    batches = [
        # No pre-buffering: it would read the whole column of a file up front.
        pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch_rows, columns=[entity])
        for path in files
    ]
    open_files = [True] * len(files)
    pending = [np.empty(0, dtype=np.int64) for _ in files]
    ends: list[int | None] = [None] * len(files)
    emitted: int | None = None
    while True:
        for i, batch_iter in enumerate(batches):
            while open_files[i] and len(pending[i]) == 0:
                batch = next(batch_iter, None)
                if batch is None:
                    open_files[i] = False
                    break
                ids = batch.column(0).to_numpy()
                if len(ids) == 0:
                    continue
                previous = ends[i]
                if (previous is not None and ids[0] < previous) or bool(np.any(ids[1:] < ids[:-1])):
                    raise _UnsortedFileError(f"{files[i]} is not sorted by {entity}")
                pending[i], ends[i] = ids, int(ids[-1])
        if not any(len(ids) for ids in pending):
            return
        # A file with batches left holds no id below its pending tail: every id up to the
        # smallest such tail has been read.
        tails = [int(pending[i][-1]) for i in range(len(files)) if open_files[i]]
        parts = []
        for i, ids in enumerate(pending):
            cut = int(np.searchsorted(ids, min(tails), side="right")) if tails else len(ids)
            parts.append(ids[:cut])
            pending[i] = ids[cut:]
        merged = np.concatenate(parts)
        merged.sort(kind="stable")  # sorted runs: timsort merges them in linear time
        fresh = np.empty(len(merged), dtype=bool)
        fresh[1:] = merged[1:] != merged[:-1]
        if len(merged):
            fresh[0] = emitted is None or merged[0] > emitted
        chunk = merged[fresh]
        if len(chunk):
            emitted = int(chunk[-1])
            yield chunk


def _balanced_shards(
    files: list[Path], entity: str, shard_rows: int, max_shards: int
) -> list[dict[str, int]]:
    """Split the window's distinct customers into equal ranges, as `np.array_split` would.

    Two streaming passes (count, then cut), so memory does not grow with customers.
    """
    total = sum(len(chunk) for chunk in _distinct_entities(files, entity))
    count = min(max_shards, max(1, math.ceil(total / shard_rows)))
    sizes = [total // count + (1 if i < total % count else 0) for i in range(count)]
    shards: list[dict[str, int]] = []
    filled, first = 0, 0
    for chunk in _distinct_entities(files, entity):
        position = 0
        while position < len(chunk):
            if filled == 0:
                first = int(chunk[position])
            take = min(sizes[len(shards)] - filled, len(chunk) - position)
            position += take
            filled += take
            if filled == sizes[len(shards)]:
                last = int(chunk[position - 1])
                shards.append(
                    {"index": len(shards), "first": first, "last": last, "customers": filled}
                )
                filled = 0
    return shards


def _shards_in_memory(
    files: list[Path], entity: str, shard_rows: int, max_shards: int
) -> list[dict[str, int]]:
    """The same split from every id in memory (for files not sorted by entity)."""
    ids = pc.unique(
        ds.dataset([str(f) for f in files], format="parquet").to_table(columns=[entity])[entity]
    ).sort()
    count = min(max_shards, max(1, math.ceil(len(ids) / shard_rows)))
    bounds = np.array_split(ids.to_numpy(), count)
    return [
        {"index": i, "first": int(part[0]), "last": int(part[-1]), "customers": len(part)}
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
    store = features.feature_store(settings)
    ttl = store.get_feature_view(settings.dataset.feature_view).ttl
    at = as_of(day)
    files = _window_files(settings, at, ttl)
    if not files:
        raise NoFeaturesError(f"no validated features within {ttl} before {at.isoformat()}")
    entity, sizing = settings.dataset.entity, settings.scoring
    try:
        shards = _balanced_shards(files, entity, sizing.shard_rows, sizing.max_shards)
    except _UnsortedFileError:  # validated files are sorted; count any other in memory
        shards = _shards_in_memory(files, entity, sizing.shard_rows, sizing.max_shards)
    return ScoringPlan(
        day=day.isoformat(),
        as_of=at.isoformat(),
        model_name=name,
        model_version=version,
        model_run_id=run_id,
        scoring_run_id=scoring_run_id(day, name, version, run_id),
        feature_ttl_seconds=ttl.total_seconds(),
        partitions=[path.parent.name for path in files],
        shards=shards,
    )


def shard_features(
    settings: Settings, scoring: ScoringPlan, first: int, last: int, columns: list[str]
) -> pa.Table:
    """Point-in-time features of customers first..last: latest row with T - ttl <= ts <= T."""
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
        batch_rows=settings.scoring.read_batch_rows,
    )


def load_model(settings: Settings, scoring: ScoringPlan) -> Any:
    """The scikit-learn pipeline of the planned version (not the alias: it may move)."""
    import mlflow

    tracking.mlflow_client(settings)
    return mlflow.sklearn.load_model(f"models:/{scoring.model_name}/{scoring.model_version}")


def model_features(model: Any) -> list[str]:
    """Input columns the model was trained on, in order."""
    return list(model.feature_names_in_)


def predictions_table(
    settings: Settings, scoring: ScoringPlan, rows: pa.Table, scores: np.ndarray
) -> pa.Table:
    """The published columns: keys, score, decision and lineage."""
    names, out = settings.dataset, settings.scoring
    count = rows.num_rows
    return pa.table(
        {
            names.entity: rows.column(names.entity),
            out.score_column: pa.array(scores.astype(np.float64)),
            out.predicted_label_column: pa.array(scores >= out.threshold),
            "model_name": pa.array([scoring.model_name] * count, pa.string()),
            "model_version": pa.array([scoring.model_version] * count, pa.string()),
            "model_run_id": pa.array([scoring.model_run_id] * count, pa.string()),
            "feature_timestamp": rows.column(names.timestamp),
            "scoring_run_id": pa.array([scoring.scoring_run_id] * count, pa.string()),
        }
    )


PREDICTIONS = "predictions"
SHADOW_PREDICTIONS = "predictions_shadow"


def _staging_dir(settings: Settings, dataset: str, scoring: ScoringPlan) -> Path:
    return settings.lake_root / dataset / f".staging-{scoring.scoring_run_id}-date={scoring.day}"


def partition(settings: Settings, dataset: str, day: date) -> Path:
    """The published predictions file of a night."""
    return lake.partition_file(settings.lake_root, dataset, day)


def score_shard(
    settings: Settings, scoring: ScoringPlan, shard: dict[str, int], dataset: str = PREDICTIONS
) -> dict[str, Any]:
    """Score one shard with the planned version; write it aside for `publish`."""
    model = load_model(settings, scoring)
    columns = model_features(model)
    rows = shard_features(settings, scoring, shard["first"], shard["last"], columns)
    scores = (
        model.predict_proba(rows.select(columns).to_pandas())[:, 1]
        if rows.num_rows
        else np.empty(0)
    )
    table = predictions_table(settings, scoring, rows, scores)
    target = _staging_dir(settings, dataset, scoring) / f"shard-{shard['index']:05d}.parquet"
    lake.write_table_atomic(table, target)
    return {"index": shard["index"], "rows": table.num_rows, "path": str(target)}


def publish(settings: Settings, scoring: ScoringPlan, dataset: str = PREDICTIONS) -> dict[str, Any]:
    """Join the shard files into one partition file and rename it into place.

    Shards are streamed one at a time, so publishing needs no more memory than
    the largest shard. A crash before the rename leaves the previous partition whole.
    """
    staging = _staging_dir(settings, dataset, scoring)
    shard_files = [staging / f"shard-{shard['index']:05d}.parquet" for shard in scoring.shards]
    missing = [path.name for path in shard_files if not path.exists()]
    if missing:
        raise FileNotFoundError(f"shards not scored for {scoring.day}: {missing}")
    target = partition(settings, dataset, date.fromisoformat(scoring.day))
    joined = staging / "joined.parquet"
    rows = 0
    with pq.ParquetWriter(joined, pq.read_schema(shard_files[0]), compression="zstd") as writer:
        for path in shard_files:
            table = pq.read_table(path)
            writer.write_table(table)
            rows += table.num_rows
    with open(joined, "rb") as handle:
        os.fsync(handle.fileno())
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(joined, target)
    shutil.rmtree(staging, ignore_errors=True)
    return {
        "path": str(target),
        "date": scoring.day,
        "model_version": scoring.model_version,
        "rows": rows,
    }


def agreement(settings: Settings, day: date) -> dict[str, float]:
    """How the shadow (challenger) predictions of a night agree with the champion's."""
    from scipy.stats import spearmanr

    names, out = settings.dataset, settings.scoring
    columns = [names.entity, out.score_column, out.predicted_label_column]
    champion = pq.read_table(partition(settings, PREDICTIONS, day), columns=columns).to_pandas()
    shadow = pq.read_table(partition(settings, SHADOW_PREDICTIONS, day), columns=columns)
    both = champion.merge(shadow.to_pandas(), on=names.entity, suffixes=("", "_shadow"))
    scores, shadow_scores = both[out.score_column], both[f"{out.score_column}_shadow"]
    labels = both[out.predicted_label_column]
    return {
        "rows_compared": float(len(both)),
        "rank_correlation": float(spearmanr(scores, shadow_scores).statistic),
        "mean_absolute_difference": float((scores - shadow_scores).abs().mean()),
        "flipped_label_share": float(
            (labels != both[f"{out.predicted_label_column}_shadow"]).mean()
        ),
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
        mlflow.log_metrics(metrics)
    return {"status": "scored", "challenger_version": scoring.model_version, **published, **metrics}
