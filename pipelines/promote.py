"""Evaluation gate, infra check, alias moves with an audit trail, and rollback.

The champion is sacred: the `champion` alias moves only after the candidate
passed the gate (value thresholds, and change thresholds against the current
champion on the same holdout) and the infra check (loaded from the registry in
a fresh process, it scores a sample with valid probabilities). Every alias move
is an MLflow run in the `<model>-registry-audit` experiment: who, when, why,
from which version to which. Moves happen under a lock and only if the
champion is still the one the gate compared against. The lock is a Postgres advisory
lock when the registry is shared across hosts (`Settings.registry_lock_url`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import tracking
from pipelines.errors import PromotionError
from pipelines.settings import MetricThreshold, Settings

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict and every number behind it (JSON-friendly)."""

    passed: bool
    reasons: list[str]
    candidate_version: str
    champion_version: str | None
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class InfraCheck:
    """Whether a registered model loads and scores in a fresh process."""

    passed: bool
    rows: int
    model_megabytes: float
    detail: str


@dataclass(frozen=True)
class AliasMove:
    """One entry of the audit trail."""

    when: str
    action: str
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    actor: str
    source: str


def _at_least(value: float, bound: float) -> bool:
    # A tolerance keeps "exactly at the bound" passing despite float rounding.
    return value >= bound or math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12)


def _at_most(value: float, bound: float) -> bool:
    return value <= bound or math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12)


def check_thresholds(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    thresholds: tuple[MetricThreshold, ...],
) -> list[str]:
    """Every threshold the candidate misses, in words; empty means it passes."""
    failures = []
    for rule in thresholds:
        value = candidate[rule.metric]
        better = _at_least if rule.greater_is_better else _at_most
        word = "at least" if rule.greater_is_better else "at most"
        if rule.threshold is not None and not better(value, rule.threshold):
            failures.append(f"{rule.metric} {value:.4f} is not {word} {rule.threshold:.4f}")
        if champion is None:
            continue
        base = champion[rule.metric]
        sign = 1 if rule.greater_is_better else -1
        if rule.min_absolute_change is not None:
            needed = base + sign * rule.min_absolute_change
            if not better(value, needed):
                failures.append(
                    f"{rule.metric} {value:.4f} is not {word} {needed:.4f} "
                    f"(champion {base:.4f}, required change {rule.min_absolute_change})"
                )
        if rule.min_relative_change is not None:
            needed = base + sign * rule.min_relative_change * abs(base)
            if not better(value, needed):
                failures.append(
                    f"{rule.metric} {value:.4f} is not {word} {needed:.4f} "
                    f"(champion {base:.4f}, required relative change {rule.min_relative_change})"
                )
    return failures


def thresholds_with_overrides(
    thresholds: tuple[MetricThreshold, ...], overrides: dict[str, dict[str, float]] | None
) -> tuple[MetricThreshold, ...]:
    """The gate's thresholds with per-run overrides keyed by metric name."""
    by_metric = {rule.metric: rule for rule in thresholds}
    for metric, changes in (overrides or {}).items():
        if metric not in by_metric:
            raise PromotionError(f"gate override names unknown metric {metric!r}")
        by_metric[metric] = MetricThreshold.model_validate(
            {**by_metric[metric].model_dump(), **changes}
        )
    return tuple(by_metric.values())


def alias_version(settings: Settings, alias: str) -> str | None:
    """The version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    client = tracking.mlflow_client(settings)
    try:
        return str(client.get_model_version_by_alias(settings.training.model_name, alias).version)
    except MlflowException:
        return None


def score(settings: Settings, version: str, frame: pd.DataFrame) -> np.ndarray:
    """Churn probabilities of a registered version (its pyfunc returns both class columns)."""
    import mlflow

    tracking.mlflow_client(settings)
    model = mlflow.pyfunc.load_model(f"models:/{settings.training.model_name}/{version}")
    columns = [spec.name for spec in model.metadata.get_input_schema().inputs]
    output = np.asarray(model.predict(frame[columns]))
    return output[:, 1] if output.ndim == 2 else output


def evaluate(
    settings: Settings,
    candidate_version: str,
    holdout: pd.DataFrame,
    overrides: dict[str, dict[str, float]] | None = None,
) -> GateDecision:
    """Score candidate and champion on the same holdout and apply the thresholds.

    The decision and every metric behind it are recorded as tags on the candidate.
    """
    from pipelines.train import classification_metrics

    labels = holdout[settings.dataset.label].to_numpy()
    candidate = classification_metrics(labels, score(settings, candidate_version, holdout))
    champion_version = alias_version(settings, CHAMPION)
    champion = (
        classification_metrics(labels, score(settings, champion_version, holdout))
        if champion_version
        else None
    )
    thresholds = thresholds_with_overrides(settings.gate.thresholds, overrides)
    failures = check_thresholds(candidate, champion, thresholds)
    decision = GateDecision(
        passed=not failures,
        reasons=failures or ["every threshold holds"],
        candidate_version=candidate_version,
        champion_version=champion_version,
        candidate_metrics=candidate,
        champion_metrics=champion or {},
    )
    tags = {
        "gate.passed": str(decision.passed).lower(),
        "gate.reasons": "; ".join(decision.reasons),
        "gate.champion_version": champion_version or "none",
        "gate.thresholds": json.dumps([rule.model_dump() for rule in thresholds]),
        **{f"gate.candidate.{k}": f"{v:.6f}" for k, v in candidate.items()},
        **{f"gate.champion.{k}": f"{v:.6f}" for k, v in (champion or {}).items()},
    }
    client = tracking.mlflow_client(settings)
    for key, value in tags.items():
        client.set_model_version_tag(settings.training.model_name, candidate_version, key, value)
    return decision


def infra_check(
    settings: Settings, version: str, sample: pd.DataFrame, workdir: Path
) -> InfraCheck:
    """Load the version from the registry in a fresh process and score `sample` there."""
    workdir.mkdir(parents=True, exist_ok=True)
    sample_path = workdir / f"infra-check-sample-v{version}.parquet"
    sample.to_parquet(sample_path, index=False)
    command = [sys.executable, "-m", "pipelines", "infra-check", version, str(sample_path)]
    done = subprocess.run(
        command, capture_output=True, text=True, env=os.environ.copy(), timeout=600, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return InfraCheck(False, 0, 0.0, "model did not load or score: " + " | ".join(tail))
    result = InfraCheck(**json.loads(done.stdout.strip().splitlines()[-1]))
    client = tracking.mlflow_client(settings)
    name = settings.training.model_name
    client.set_model_version_tag(name, version, "infra_check.passed", str(result.passed).lower())
    client.set_model_version_tag(name, version, "infra_check.detail", result.detail)
    return result


def score_sample_here(settings: Settings, version: str, sample_path: Path) -> InfraCheck:
    """The body of the infra check, run inside the fresh process."""
    import mlflow

    tracking.mlflow_client(settings)
    uri = f"models:/{settings.training.model_name}/{version}"
    local = Path(mlflow.artifacts.download_artifacts(uri))
    megabytes = sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) / 2**20
    sample = pd.read_parquet(sample_path)
    scores = score(settings, version, sample)
    valid = np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0)
    problems = []
    if len(scores) != len(sample):
        problems.append(f"{len(scores)} scores for {len(sample)} rows")
    if not valid.all():
        problems.append(f"{int((~valid).sum())} of {len(scores)} scores are not probabilities")
    if megabytes > settings.gate.max_model_megabytes:
        problems.append(
            f"model is {megabytes:.2f} MB, over the {settings.gate.max_model_megabytes} MB budget"
        )
    detail = "; ".join(problems) or f"scored {len(sample)} rows with valid probabilities"
    return InfraCheck(not problems, len(scores), round(megabytes, 3), detail)


def _require_version(settings: Settings, version: str) -> None:
    from mlflow.exceptions import MlflowException

    name = settings.training.model_name
    try:
        tracking.mlflow_client(settings).get_model_version(name, version)
    except MlflowException as error:
        raise PromotionError(f"{name} v{version} is not a registered version") from error


@contextmanager
def registry_lock(settings: Settings) -> Iterator[None]:
    """Serialize alias moves: across hosts on Postgres when configured, else on this host."""
    lock_url = settings.registry_lock_url
    if lock_url:
        with _advisory_lock(lock_url, f"mlflow-registry:{settings.training.model_name}"):
            yield
        return
    path = settings.mlflow_root / "registry.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def advisory_lock_key(name: str) -> int:
    """A stable signed 64-bit key for `pg_advisory_lock` (Python's `hash` is salted)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def _advisory_lock(url: str, name: str) -> Iterator[None]:
    """Hold a session-level Postgres advisory lock; a crashed holder's session frees it."""
    import psycopg2

    # libpq takes `postgresql://`, not SQLAlchemy's `postgresql+driver://`.
    dsn = "postgresql://" + url.split("://", 1)[1]
    connection = psycopg2.connect(dsn)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (advisory_lock_key(name),))
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (advisory_lock_key(name),))
    finally:
        connection.close()


def _record(settings: Settings, move: AliasMove) -> None:
    import mlflow

    tracking.mlflow_client(settings)
    experiment = tracking.experiment_id(settings, f"{settings.training.model_name}-registry-audit")
    name = f"{move.action}-{move.alias}-v{move.to_version or 'none'}"
    with mlflow.start_run(
        experiment_id=experiment, run_name=name, nested=mlflow.active_run() is not None
    ):
        mlflow.set_tags(
            {f"audit.{k}": "" if v is None else str(v) for k, v in asdict(move).items()}
        )


def _move(
    settings: Settings,
    action: str,
    alias: str,
    version: str | None,
    reason: str,
    actor: str,
    source: str,
) -> AliasMove:
    client = tracking.mlflow_client(settings)
    name = settings.training.model_name
    before = alias_version(settings, alias)
    if version is None:
        client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, version)
    move = AliasMove(
        when=datetime.now(UTC).isoformat(),
        action=action,
        alias=alias,
        from_version=before,
        to_version=version,
        reason=reason,
        actor=actor,
        source=source,
    )
    _record(settings, move)
    return move


def promote(
    settings: Settings,
    version: str,
    expected_champion: str | None,
    reason: str,
    actor: str,
    source: str = "",
) -> list[AliasMove]:
    """Make `version` the champion; the old champion becomes `previous_champion`.

    Refuses if the champion is no longer `expected_champion`: the gate compared
    against a model that is no longer serving, so its verdict is stale.
    """
    with registry_lock(settings):
        _require_version(settings, version)
        current = alias_version(settings, CHAMPION)
        if current == version:
            raise PromotionError(f"v{version} is already the champion")
        if current != expected_champion:
            raise PromotionError(
                f"champion moved from v{expected_champion} to v{current} while v{version} was "
                "being evaluated; re-run training to gate against the new champion"
            )
        moves = []
        if current is not None:
            moves.append(
                _move(settings, "promote", PREVIOUS_CHAMPION, current, reason, actor, source)
            )
        moves.append(_move(settings, "promote", CHAMPION, version, reason, actor, source))
        if alias_version(settings, CHALLENGER) == version:
            moves.append(_move(settings, "promote", CHALLENGER, None, reason, actor, source))
        return moves


def reject(
    settings: Settings, version: str, reason: str, actor: str, source: str = ""
) -> AliasMove:
    """Keep the champion; the candidate becomes the `challenger`, with the reason recorded."""
    with registry_lock(settings):
        _require_version(settings, version)
        client = tracking.mlflow_client(settings)
        client.set_model_version_tag(
            settings.training.model_name, version, "rejected_because", reason
        )
        return _move(settings, "reject", CHALLENGER, version, reason, actor, source)


@dataclass(frozen=True)
class RollbackTarget:
    """A rollback decided once: `version` becomes champion in place of `replaces`."""

    version: str
    replaces: str | None


def _rollback_moved_by(settings: Settings, run_id: str) -> RollbackTarget | None:
    """The rollback an Airflow run already carried out (its champion move), if any."""
    for move in history(settings):
        moved_champion = move.action == "rollback" and move.alias == CHAMPION
        if moved_champion and move.source == run_id and move.to_version is not None:
            return RollbackTarget(version=move.to_version, replaces=move.from_version)
    return None


def rollback_target(settings: Settings, to_version: str | None, run_id: str = "") -> RollbackTarget:
    """The version a rollback restores (default: `previous_champion`) and the one it replaces.

    An Airflow run (`run_id`) that already moved the champion keeps the target it moved it
    to: clearing the whole run never rolls back a second time.
    """
    decided = _rollback_moved_by(settings, run_id) if run_id else None
    if decided is not None:
        return decided
    current = alias_version(settings, CHAMPION)
    target = to_version or alias_version(settings, PREVIOUS_CHAMPION)
    if target is None:
        raise PromotionError("no previous champion to roll back to; name a version")
    if target == current:
        raise PromotionError(f"v{target} is already the champion")
    _require_version(settings, target)
    return RollbackTarget(version=target, replaces=current)


def apply_rollback(
    settings: Settings, target: RollbackTarget, reason: str, actor: str, source: str = ""
) -> list[AliasMove]:
    """Carry out a decided rollback; run again (after a crash, say) it only completes it."""
    with registry_lock(settings):
        current = alias_version(settings, CHAMPION)
        if current not in (target.version, target.replaces):
            raise PromotionError(
                f"the champion moved to v{current} after the rollback to v{target.version} "
                f"(replacing v{target.replaces}) was decided; decide the rollback again"
            )
        moves = []
        if current != target.version:
            moves.append(
                _move(settings, "rollback", CHAMPION, target.version, reason, actor, source)
            )
        previous = alias_version(settings, PREVIOUS_CHAMPION)
        if target.replaces is not None and previous != target.replaces:
            moves.append(
                _move(
                    settings, "rollback", PREVIOUS_CHAMPION, target.replaces, reason, actor, source
                )
            )
        return moves


def rollback(
    settings: Settings, to_version: str | None, reason: str, actor: str, source: str = ""
) -> list[AliasMove]:
    """Restore a previous champion (by default `previous_champion`)."""
    return apply_rollback(settings, rollback_target(settings, to_version), reason, actor, source)


def history(settings: Settings) -> list[AliasMove]:
    """Every alias move of the model, oldest first."""
    tracking.mlflow_client(settings)
    client = tracking.mlflow_client(settings)
    experiment = client.get_experiment_by_name(f"{settings.training.model_name}-registry-audit")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    moves = []
    for run in runs:
        tags = {
            k.removeprefix("audit."): v for k, v in run.data.tags.items() if k.startswith("audit.")
        }
        moves.append(
            AliasMove(**{k: (tags.get(k) or None) for k in AliasMove.__dataclass_fields__})
        )
    return sorted(moves, key=lambda move: move.when or "")
