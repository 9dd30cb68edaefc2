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
    entity = settings.dataset.entity
    ids = pc.unique(
        ds.dataset([str(f) for f in files], format="parquet").to_table(columns=[entity])[entity]
    ).sort()
    count = min(
        settings.scoring.max_shards, max(1, math.ceil(len(ids) / settings.scoring.shard_rows))
    )
    bounds = np.array_split(ids.to_numpy(), count)
    shards = [
        {"index": i, "first": int(part[0]), "last": int(part[-1]), "customers": len(part)}
        for i, part in enumerate(bounds)
        if len(part)
    ]
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
    rows = features.window_rows(
        _window_files(settings, at, ttl),
        names.entity,
        names.timestamp,
        columns,
        at - ttl,
        at,
        entities=(first, last),
        batch_rows=settings.scoring.read_batch_rows,
    )
    return features.latest_per_entity(rows, names.entity, names.timestamp)


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
