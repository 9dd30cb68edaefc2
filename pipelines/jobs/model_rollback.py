"""Entry points of the `model_rollback` DAG's tasks and the CLI's registry commands:
payloads in and out as XCom values."""

from __future__ import annotations

import json
from typing import Any

from pipelines import contracts
from pipelines.contracts import XCom
from pipelines.settings import load_settings


def rollback_target(to_version: str | None, run_id: str | None = "") -> dict[str, Any]:
    """Decide a rollback once (a `RollbackTarget`): the version to restore and the champion
    it replaces (the Airflow run `run_id` keeps what it decided before, when it already moved
    an alias)."""
    from pipelines.registry import alias_moves

    return alias_moves.rollback_target(load_settings(), to_version, run_id or "").to_xcom()


def apply_rollback(
    target: XCom, reason: str, actor: str, source: str | None = ""
) -> list[dict[str, Any]]:
    """Carry out a decided rollback; again, it only completes it (never a second rollback)."""
    from pipelines.registry import alias_moves

    decided = contracts.RollbackTarget.from_xcom(target)
    moves = alias_moves.apply_rollback(load_settings(), decided, reason, actor, source or "")
    return [move.to_xcom() for move in moves]


def rollback(
    to_version: str | None, reason: str, actor: str, source: str = ""
) -> list[dict[str, Any]]:
    """Restore a previous champion (default: `previous_champion`)."""
    return apply_rollback(rollback_target(to_version), reason, actor, source)


def registry_history() -> list[dict[str, Any]]:
    """The audit trail of every alias move, oldest first."""
    from pipelines.registry import journal

    return [move.to_xcom() for move in journal.history(load_settings())]


def model_card_markdown(version: str) -> str:
    """A registered version's model card, as markdown."""
    from pipelines.training import model_card

    return model_card.stored(load_settings(), version, model_card.CARD_MARKDOWN)


def model_card_json(version: str) -> dict[str, Any]:
    """A registered version's model card, as the JSON document its markdown renders."""
    from pipelines.training import model_card

    return dict(json.loads(model_card.stored(load_settings(), version, model_card.CARD_JSON)))
