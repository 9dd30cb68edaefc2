"""The audit journal: one MLflow run per registry change, intent then done, completed after
a crash."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from pipelines import contracts, faults
from pipelines.contracts import AliasMove
from pipelines.io import tracking
from pipelines.registry.model_versions import alias_version
from pipelines.settings import Settings

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
    return tracking.experiment_id(settings, contracts.audit_experiment(settings.project.model.name))


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
    name = settings.project.model.name
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


def history(settings: Settings) -> list[AliasMove]:
    """Every alias move of the model, oldest first (a change a crash interrupted, and no
    one completed yet, shows as `pending`)."""
    return [move for record in records(settings) for move in record.alias_moves()]
