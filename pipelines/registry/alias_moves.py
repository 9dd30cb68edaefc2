"""Promotion, rejection and rollback: alias moves under a lock, journaled first.

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

from pipelines.contracts import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, RollbackTarget
from pipelines.errors import PromotionError
from pipelines.io import tracking
from pipelines.registry.journal import (
    AliasMove,
    PlannedMove,
    _journal,
    _latest,
    _same_request,
    complete_interrupted,
    history,
)
from pipelines.registry.locks import registry_lock
from pipelines.registry.model_versions import _require_version, alias_version
from pipelines.settings import Settings


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
            settings.project.model.name, version, "rejected_because", reason
        )
        before = alias_version(settings, CHALLENGER)
        move = PlannedMove(CHALLENGER, before, version)
        return _journal(settings, "reject", [move], reason, actor, source)[0]


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
