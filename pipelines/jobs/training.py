"""Entry points of the `training` DAG's tasks: payloads in and out as XCom values.

Every Airflow task is a fresh process: stage modules are imported inside each job, so a
task does not pay for importing what only other tasks use.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import contracts
from pipelines.contracts import GateDecision, InfraCheck, TrainedModel, TrainingSet, XCom
from pipelines.errors import ConfigurationError
from pipelines.settings import Settings, load_settings

if TYPE_CHECKING:
    import pandas as pd


def _training_set_path(settings: Settings, as_of: date, digest: str) -> Path:
    return settings.state_root / "training_sets" / f"as_of={as_of.isoformat()}-{digest}.parquet"


def build_training_set(as_of: str | date | datetime, request: XCom) -> dict[str, Any]:
    """Labels known on `as_of` joined point-in-time with the feature service, validated, saved
    (a `TrainingSet`, carrying the checked request on to the later tasks)."""
    import pyarrow as pa

    from pipelines.features import labelling
    from pipelines.ingest import validation
    from pipelines.io import feast_store, lake
    from pipelines.training import registration

    settings = load_settings()
    checked = contracts.TrainingRequest(**request)
    start = contracts.as_night(checked.training_start) if checked.training_start else None
    end = contracts.as_night(checked.training_end) if checked.training_end else None
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
    stamps = frame[settings.project.source.timestamp]
    return TrainingSet(
        path=str(path),
        rows=len(frame),
        label_share=float(frame[settings.project.label.column].mean()),
        start=stamps.min().isoformat(),
        end=stamps.max().isoformat(),
        request=checked,
    ).to_xcom()


def build_requested_training_set(conf: XCom, as_of: str | date | datetime) -> dict[str, Any]:
    """The first task: check the run's request (what Airflow's Params cannot say is refused
    here, before any work, with a permanent error), then build its training set."""
    from pipelines import training_request

    request = training_request.check(dict(conf))
    return build_training_set(as_of, request.to_conf())


def train_model(training_set: XCom, tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Train and register a candidate, with its model card, from a saved training set with
    the request's hyperparameters (a `TrainedModel`), first closing, as failed, the runs of
    training processes that were killed."""
    import pandas as pd

    from pipelines.io import tracking
    from pipelines.training import registration

    settings = load_settings()
    saved = TrainingSet.from_xcom(training_set)
    tracking.close_abandoned_runs(settings, settings.project.model.name)
    frame = pd.read_parquet(saved.path)
    labelled = {"reason": saved.request.reason, **(tags or {}), **tracking.process_tags()}
    hyperparameters = saved.request.hyperparameters
    return registration.train_and_register(settings, frame, hyperparameters, labelled).to_xcom()


def _holdout(settings: Settings, training_set: TrainingSet) -> pd.DataFrame:
    import pandas as pd

    from pipelines.training import splits

    frame = pd.read_parquet(training_set.path)
    training = settings.training
    return splits.split_by_time(
        frame, settings.project.source.timestamp, training.validation_share, training.holdout_share
    ).holdout


def evaluate_candidate(training_set: XCom, candidate: XCom) -> dict[str, Any]:
    """Gate the candidate against the champion on the training set's holdout days, with the
    request's gate overrides (a `GateDecision`)."""
    from pipelines.registry import evaluation

    settings = load_settings()
    saved = TrainingSet.from_xcom(training_set)
    version = TrainedModel.from_xcom(candidate).version
    holdout = _holdout(settings, saved)
    overrides = saved.request.gate_overrides
    return evaluation.evaluate(settings, version, holdout, overrides).to_xcom()


def check_infra(training_set: XCom, candidate: XCom) -> dict[str, Any]:
    """Load the candidate from the registry in a fresh process and score holdout rows (an
    `InfraCheck`)."""
    from pipelines.registry import infracheck

    settings = load_settings()
    version = TrainedModel.from_xcom(candidate).version
    holdout = _holdout(settings, TrainingSet.from_xcom(training_set))
    sample = holdout.head(settings.gate.infra_check_rows)
    workdir = settings.state_root / "infra"
    return infracheck.infra_check(settings, version, sample, workdir).to_xcom()


def promotable(gate: XCom, infra: XCom) -> bool:
    """Whether the candidate passed both the gate and the infra check."""
    return GateDecision.from_xcom(gate).passed and InfraCheck.from_xcom(infra).passed


def approval_required() -> bool:
    """Whether a person approves a promotion (`MLOPS_GATE__REQUIRE_APPROVAL`)."""
    return load_settings().gate.require_approval


def promote_candidate(
    candidate: XCom,
    gate: XCom,
    training_set: XCom,
    actor: str,
    source: str | None = "",
) -> list[dict[str, Any]]:
    """Move `champion` to the candidate, if the champion is still the one the gate judged
    against (the old one becomes `previous_champion`), and record it on the candidate's
    model card; the audit trail's entries."""
    from pipelines.registry import alias_moves
    from pipelines.training import model_card

    version = TrainedModel.from_xcom(candidate).version
    expected = GateDecision.from_xcom(gate).champion_version
    reason = TrainingSet.from_xcom(training_set).request.reason
    settings = load_settings()
    moves = alias_moves.promote(settings, version, expected, reason, actor, source or "")
    model_card.write(settings, version, model_card.decided(moves))
    return [move.to_xcom() for move in moves]


def promotion_event(candidate: XCom, gate: XCom) -> dict[str, Any]:
    """The `model_promoted` asset event's extra."""
    return contracts.promotion_event(
        TrainedModel.from_xcom(candidate), GateDecision.from_xcom(gate)
    )


def reject_candidate(
    candidate: XCom,
    gate: XCom,
    infra: XCom,
    actor: str,
    source: str | None = "",
) -> dict[str, Any]:
    """Keep the champion; label the candidate `challenger` with why, and record it on its
    model card (an `AliasMove`)."""
    from pipelines.registry import alias_moves, evaluation
    from pipelines.training import model_card

    version = TrainedModel.from_xcom(candidate).version
    reason = evaluation.rejection_reason(GateDecision.from_xcom(gate), InfraCheck.from_xcom(infra))
    settings = load_settings()
    move = alias_moves.reject(settings, version, reason, actor, source or "")
    model_card.write(settings, version, model_card.decided([move]))
    return move.to_xcom()


def infra_check_here(version: str, sample_path: str) -> dict[str, Any]:
    """The infra check's scoring, in the current (fresh) process."""
    from pipelines.registry import infracheck

    return infracheck.score_sample_here(load_settings(), version, Path(sample_path)).to_xcom()


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
    conf = {
        "training_start": prediction_start,
        "training_end": prediction_end,
        "hyperparameters": hyperparameters or {},
        "gate_overrides": gate_overrides or {},
        "reason": reason,
    }
    training_set = build_requested_training_set(conf, as_of)
    candidate = train_model(training_set)
    gate = evaluate_candidate(training_set, candidate)
    infra = check_infra(training_set, candidate)
    outcome: Any
    if promotable(gate, infra):
        outcome = promote_candidate(candidate, gate, training_set, actor, "cli")
    else:
        outcome = reject_candidate(candidate, gate, infra, actor, "cli")
    return {
        "training_set": training_set,
        "candidate": candidate,
        "gate": gate,
        "infra_check": infra,
        "outcome": outcome,
    }
