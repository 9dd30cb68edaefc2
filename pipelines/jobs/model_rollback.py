"""Entry points of the `model_rollback` DAG's tasks and the CLI's registry commands."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pipelines.settings import load_settings

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def rollback_target(to_version: str | None, run_id: str = "") -> dict[str, Any]:
    """Decide a rollback once: the version to restore and the champion it replaces (the
    Airflow run `run_id` keeps what it decided before, when it already moved an alias)."""
    from pipelines.registry import alias_moves

    return asdict(alias_moves.rollback_target(load_settings(), to_version, run_id))


def apply_rollback(
    target: dict[str, Any], reason: str, actor: str, source: str = ""
) -> list[dict[str, Any]]:
    """Carry out a decided rollback; again, it only completes it (never a second rollback)."""
    from pipelines.registry import alias_moves

    decided = alias_moves.RollbackTarget(**target)
    moves = alias_moves.apply_rollback(load_settings(), decided, reason, actor, source)
    return [asdict(move) for move in moves]


def rollback(
    to_version: str | None, reason: str, actor: str, source: str = ""
) -> list[dict[str, Any]]:
    """Restore a previous champion (default: `previous_champion`)."""
    return apply_rollback(rollback_target(to_version), reason, actor, source)


def registry_history() -> list[dict[str, Any]]:
    """The audit trail of every alias move, oldest first."""
    from pipelines.registry import journal

    return [asdict(move) for move in journal.history(load_settings())]
