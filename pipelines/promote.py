"""Evaluation gate, infra check, alias moves with an audit trail, and rollback.

The champion is sacred: the `champion` alias moves only after the candidate
passed the gate (value thresholds, and change thresholds against the current
champion on the same holdout) and the infra check (loaded from the registry in
a fresh process, it scores a sample with valid probabilities). Every registry
change is journaled as an MLflow run in the `<model>-registry-audit` experiment
(who, when, why, each alias from which version to which) before any alias moves,
and closed after; a change a crash interrupted is completed by the next one, so
no alias moves without its record. Changes happen under a lock and only if the
champion is still the one the gate compared against. The lock is a Postgres advisory
lock when the registry is shared across hosts (`Settings.registry_lock_url`).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import faults, tracking
from pipelines.errors import PromotionError
from pipelines.settings import MetricThreshold, Settings

_PR_SET_PDEATHSIG = 1  # prctl(2)

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
    state: str = "done"


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
        command,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
        check=False,
        preexec_fn=_dies_with(os.getpid()),
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


def _dies_with(parent: int) -> Callable[[], None] | None:
    """A child-process hook that has Linux kill the child when `parent` dies (even by
    SIGKILL, which runs no clean-up), so a killed task leaves no orphan behind."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


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


# The audit trail is a journal: one MLflow run per registry change, written before any
# alias moves (state "intent", the run RUNNING) and closed after the last one ("done").
# Whoever next takes the registry lock completes a change a crash interrupted, so an
# alias never moves without its record.
_STATE = "audit.state"
_INTENT, _DONE = "intent", "done"


@dataclass(frozen=True)
class PlannedMove:
    """One alias move of a change, decided before any alias moves."""

    alias: str
    from_version: str | None
    to_version: str | None


@dataclass(frozen=True)
class AuditRecord:
    """One registry change: its alias moves and why, as journaled."""

    run_id: str
    state: str
    when: str
    action: str
    reason: str
    actor: str
    source: str
    moves: tuple[PlannedMove, ...]

    def alias_moves(self) -> list[AliasMove]:
        """The change as audit-trail entries, one per alias."""
        return [
            AliasMove(
                self.when,
                self.action,
                move.alias,
                move.from_version,
                move.to_version,
                self.reason,
                self.actor,
                self.source,
                "done" if self.state == _DONE else "pending",
            )
            for move in self.moves
        ]


def _audit_experiment(settings: Settings) -> str:
    return tracking.experiment_id(settings, f"{settings.training.model_name}-registry-audit")


def records(settings: Settings, state: str | None = None) -> list[AuditRecord]:
    """Every journaled registry change (or those in one state), oldest first."""
    client = tracking.mlflow_client(settings)
    query = f"tags.`{_STATE}` = '{state}'" if state else ""
    runs = client.search_runs(
        [_audit_experiment(settings)], query, order_by=["attributes.start_time ASC"]
    )
    found = []
    for run in runs:
        tags = run.data.tags
        found.append(
            AuditRecord(
                run_id=run.info.run_id,
                state=tags.get(_STATE, _DONE),
                when=tags.get("audit.when", ""),
                action=tags.get("audit.action", ""),
                reason=tags.get("audit.reason", ""),
                actor=tags.get("audit.actor", ""),
                source=tags.get("audit.source", ""),
                moves=tuple(PlannedMove(**m) for m in json.loads(tags.get("audit.moves", "[]"))),
            )
        )
    return sorted(found, key=lambda record: record.when)


def _carry_out(settings: Settings, record: AuditRecord) -> AuditRecord:
    """Move every alias of a journaled change (again, harmlessly), then close its record."""
    client = tracking.mlflow_client(settings)
    name = settings.training.model_name
    for move in record.moves:
        if move.to_version is None:
            if alias_version(settings, move.alias) is not None:
                client.delete_registered_model_alias(name, move.alias)
        else:
            client.set_registered_model_alias(name, move.alias, move.to_version)
        faults.crash_here(settings, f"registry.moved.{move.alias}")
    client.set_tag(record.run_id, _STATE, _DONE)
    client.set_terminated(record.run_id, "FINISHED")
    return replace(record, state=_DONE)


def _journal(
    settings: Settings,
    action: str,
    moves: list[PlannedMove],
    reason: str,
    actor: str,
    source: str,
) -> list[AliasMove]:
    """Record a change as intended, carry it out, and close it: its audit-trail entries."""
    client = tracking.mlflow_client(settings)
    when = datetime.now(UTC).isoformat()
    name = f"{action}-" + ",".join(f"{m.alias}=v{m.to_version or 'none'}" for m in moves)
    tags = {
        _STATE: _INTENT,
        "audit.when": when,
        "audit.action": action,
        "audit.reason": reason,
        "audit.actor": actor,
        "audit.source": source,
        "audit.moves": json.dumps([asdict(move) for move in moves]),
    }
    run = client.create_run(_audit_experiment(settings), tags=tags, run_name=name)
    record = AuditRecord(
        run.info.run_id, _INTENT, when, action, reason, actor, source, tuple(moves)
    )
    faults.crash_here(settings, "registry.intent_recorded")
    return _carry_out(settings, record).alias_moves()


def complete_interrupted(settings: Settings) -> list[AuditRecord]:
    """Finish every change a crash left half done (call under the registry lock)."""
    return [_carry_out(settings, record) for record in records(settings, _INTENT)]


def _latest(settings: Settings, alias: str) -> AuditRecord | None:
    """The latest journaled change that moved `alias`."""
    moved = [r for r in records(settings) if any(m.alias == alias for m in r.moves)]
    return moved[-1] if moved else None


def _same_request(record: AuditRecord | None, action: str, source: str, version: str) -> bool:
    """Whether `record` is this very request, already carried out (a rerun of its task)."""
    return (
        record is not None
        and bool(source)
        and (record.action, record.source) == (action, source)
        and any(move.to_version == version for move in record.moves)
    )


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
        complete_interrupted(settings)
        _require_version(settings, version)
        current = alias_version(settings, CHAMPION)
        latest = _latest(settings, CHAMPION)
        if current == version and _same_request(latest, "promote", source, version):
            return latest.alias_moves()  # type: ignore[union-attr]
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
                PlannedMove(PREVIOUS_CHAMPION, alias_version(settings, PREVIOUS_CHAMPION), current)
            )
        moves.append(PlannedMove(CHAMPION, current, version))
        if alias_version(settings, CHALLENGER) == version:
            moves.append(PlannedMove(CHALLENGER, version, None))
        return _journal(settings, "promote", moves, reason, actor, source)


def reject(
    settings: Settings, version: str, reason: str, actor: str, source: str = ""
) -> AliasMove:
    """Keep the champion; the candidate becomes the `challenger`, with the reason recorded."""
    with registry_lock(settings):
        complete_interrupted(settings)
        _require_version(settings, version)
        latest = _latest(settings, CHALLENGER)
        if _same_request(latest, "reject", source, version):
            return latest.alias_moves()[0]  # type: ignore[union-attr]
        client = tracking.mlflow_client(settings)
        client.set_model_version_tag(
            settings.training.model_name, version, "rejected_because", reason
        )
        before = alias_version(settings, CHALLENGER)
        move = PlannedMove(CHALLENGER, before, version)
        return _journal(settings, "reject", [move], reason, actor, source)[0]


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
        complete_interrupted(settings)
        current = alias_version(settings, CHAMPION)
        latest = _latest(settings, CHAMPION)
        if current == target.version and _same_request(latest, "rollback", source, current):
            return latest.alias_moves()  # type: ignore[union-attr]
        if current not in (target.version, target.replaces):
            raise PromotionError(
                f"the champion moved to v{current} after the rollback to v{target.version} "
                f"(replacing v{target.replaces}) was decided; decide the rollback again"
            )
        moves = []
        if current != target.version:
            moves.append(PlannedMove(CHAMPION, current, target.version))
        previous = alias_version(settings, PREVIOUS_CHAMPION)
        if target.replaces is not None and previous != target.replaces:
            moves.append(PlannedMove(PREVIOUS_CHAMPION, previous, target.replaces))
        if not moves:
            return []
        return _journal(settings, "rollback", moves, reason, actor, source)


def rollback(
    settings: Settings, to_version: str | None, reason: str, actor: str, source: str = ""
) -> list[AliasMove]:
    """Restore a previous champion (by default `previous_champion`)."""
    return apply_rollback(settings, rollback_target(settings, to_version), reason, actor, source)


def history(settings: Settings) -> list[AliasMove]:
    """Every alias move of the model, oldest first (a change a crash interrupted, and no
    one completed yet, shows as `pending`)."""
    return [move for record in records(settings) for move in record.alias_moves()]
