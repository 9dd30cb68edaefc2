"""Entry points with plain, JSON-friendly arguments: what DAG tasks and the CLI call.

Each job loads the settings from the environment, runs one stage, and returns
a small dict or string that fits in an XCom. A nightly job takes the night as the
run's partition key (``YYYY-MM-DD``; the CLI passes a date).

Stage modules are imported inside each job: every Airflow task is a fresh process,
and a landing check should not pay for importing Feast, Great Expectations and
XGBoost (several seconds) that only other tasks use.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import contracts
from pipelines.errors import ConfigurationError
from pipelines.settings import Settings, load_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def _training_set_path(settings: Settings, as_of: date, digest: str) -> Path:
    return settings.state_root / "training_sets" / f"as_of={as_of.isoformat()}-{digest}.parquet"


def build_training_set(
    as_of: str | date | datetime,
    prediction_start: str | None = None,
    prediction_end: str | None = None,
) -> dict[str, Any]:
    """Labels known on `as_of` joined point-in-time with the feature service, validated, saved."""
    import pyarrow as pa

    from pipelines.features import labelling
    from pipelines.ingest import validation
    from pipelines.io import feast_store, lake
    from pipelines.training import registration

    settings = load_settings()
    start = contracts.as_night(prediction_start) if prediction_start else None
    end = contracts.as_night(prediction_end) if prediction_end else None
    if start and end and start > end:
        raise ConfigurationError(
            f"training window starts after it ends: {start.isoformat()} > {end.isoformat()}"
        )
    store = feast_store.apply_repo(settings)
    labels = labelling.load_labels(settings, contracts.as_night(as_of), None, start, end)
    frame = labelling.training_set(settings, labels, store)
    validation.validate_training_set(settings, frame)
    path = _training_set_path(settings, contracts.as_night(as_of), registration.fingerprint(frame))
    lake.write_table_atomic(pa.Table.from_pandas(frame, preserve_index=False), path)
    stamps = frame[settings.dataset.timestamp]
    return {
        "path": str(path),
        "rows": len(frame),
        "label_share": float(frame[settings.dataset.label].mean()),
        "start": stamps.min().isoformat(),
        "end": stamps.max().isoformat(),
    }


def train_model(
    training_set_path: str,
    hyperparameters: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train and register a candidate from a saved training set (first closing, as failed,
    the runs of training processes that were killed)."""
    import pandas as pd

    from pipelines.io import tracking
    from pipelines.training import registration

    settings = load_settings()
    tracking.close_abandoned_runs(settings, settings.training.model_name)
    frame = pd.read_parquet(training_set_path)
    labelled = {**(tags or {}), **tracking.process_tags()}
    return asdict(registration.train_and_register(settings, frame, hyperparameters, labelled))


def _holdout(settings: Settings, training_set_path: str) -> pd.DataFrame:
    import pandas as pd

    from pipelines.training import splits

    frame = pd.read_parquet(training_set_path)
    training = settings.training
    return splits.split_by_time(
        frame, settings.dataset.timestamp, training.validation_share, training.holdout_share
    ).holdout


def evaluate_candidate(
    training_set_path: str, version: str, gate_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Gate the candidate against the champion on the training set's holdout days."""
    from pipelines.registry import evaluation

    settings = load_settings()
    holdout = _holdout(settings, training_set_path)
    return asdict(evaluation.evaluate(settings, version, holdout, gate_overrides))


def check_infra(training_set_path: str, version: str) -> dict[str, Any]:
    """Load the candidate from the registry in a fresh process and score holdout rows."""
    from pipelines.registry import infracheck

    settings = load_settings()
    sample = _holdout(settings, training_set_path).head(settings.gate.infra_check_rows)
    return asdict(infracheck.infra_check(settings, version, sample, settings.state_root / "infra"))


def promote_candidate(
    version: str, expected_champion: str | None, reason: str, actor: str, source: str = ""
) -> list[dict[str, Any]]:
    """Move `champion` to the candidate (the old one becomes `previous_champion`)."""
    from pipelines.registry import alias_moves

    moves = alias_moves.promote(load_settings(), version, expected_champion, reason, actor, source)
    return [asdict(move) for move in moves]


def reject_candidate(version: str, reason: str, actor: str, source: str = "") -> dict[str, Any]:
    """Keep the champion; label the candidate `challenger` with the reason."""
    from pipelines.registry import alias_moves

    return asdict(alias_moves.reject(load_settings(), version, reason, actor, source))


def infra_check_here(version: str, sample_path: str) -> dict[str, Any]:
    """The infra check's scoring, in the current (fresh) process."""
    from pipelines.registry import infracheck

    return asdict(infracheck.score_sample_here(load_settings(), version, Path(sample_path)))


def promotion_route(gate: dict[str, Any], infra: dict[str, Any]) -> str | list[str]:
    """Task ids the training DAG follows after the gate and the infra check."""
    if not (gate["passed"] and infra["passed"]):
        return "reject"
    return ["approve", "promote"] if load_settings().gate.require_approval else "promote"


def rejection_reason(gate: dict[str, Any], infra: dict[str, Any]) -> str:
    """Why a candidate was not promoted, in one line."""
    reasons = [] if gate["passed"] else [f"gate: {'; '.join(gate['reasons'])}"]
    if not infra["passed"]:
        reasons.append(f"infra check: {infra['detail']}")
    return " | ".join(reasons) or "not approved"


def train_and_gate(
    as_of: str | date | datetime,
    prediction_start: str | None,
    prediction_end: str | None,
    hyperparameters: dict[str, Any] | None,
    reason: str,
    actor: str,
    gate_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The training DAG's steps in one process (for the CLI), with the same functions: the
    request is checked first, as the DAG's first task checks it."""
    from pipelines import training_request

    request = training_request.check(
        {
            "training_start": prediction_start,
            "training_end": prediction_end,
            "hyperparameters": hyperparameters or {},
            "gate_overrides": gate_overrides or {},
            "reason": reason,
        }
    )
    training_set = build_training_set(as_of, request.training_start, request.training_end)
    candidate = train_model(
        training_set["path"], request.hyperparameters, {"reason": request.reason}
    )
    gate = evaluate_candidate(training_set["path"], candidate["version"], request.gate_overrides)
    infra = check_infra(training_set["path"], candidate["version"])
    if promotion_route(gate, infra) == "reject":
        outcome: Any = reject_candidate(
            candidate["version"], rejection_reason(gate, infra), actor, "cli"
        )
    else:
        outcome = promote_candidate(
            candidate["version"], gate["champion_version"], request.reason, actor, "cli"
        )
    return {"candidate": candidate, "gate": gate, "infra_check": infra, "outcome": outcome}
