"""Entry points with plain, JSON-friendly arguments: what DAG tasks and the CLI call.

Each job loads the settings from the environment, runs one stage, and returns
a small dict or string that fits in an XCom.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from pipelines import features, lake, monitor, promote, score, synthetic, train, validate
from pipelines.errors import ConfigurationError
from pipelines.settings import Settings, load_settings

log = logging.getLogger(__name__)


def _day(value: str | date | datetime) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value[:10])


def _instant(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def check_landed(day: str | date | datetime) -> str:
    """Path of the day's landed raw partition; `NotLandedError` if it is not there."""
    return str(validate.raw_partition(load_settings(), _day(day)))


def validate_partition(day: str | date | datetime) -> dict[str, Any]:
    """Run the validation gate on a day's raw partition (quarantines it on failure)."""
    return asdict(validate.validate_partition(load_settings(), _day(day)))


def publish_partition(day: str | date | datetime) -> str:
    """Publish a day's staged partition into the validated zone."""
    return str(validate.publish_partition(load_settings(), _day(day)))


def materialize(interval_start: str | datetime, interval_end: str | datetime) -> dict[str, Any]:
    """Apply the Feast repo, then materialize the run's window into the online store."""
    settings = load_settings()
    store = features.apply_repo(settings)
    start, end = features.materialization_window(
        settings, _instant(interval_start), _instant(interval_end)
    )
    return asdict(features.materialize_window(settings, start, end, store))


def generate(
    start: str | date | None = None,
    days: int | None = None,
    fault: str | None = None,
) -> list[str]:
    """Land generated raw partitions; `fault` (a `synthetic.Fault` value) applies to each day."""
    settings = load_settings()
    cfg = settings.synthetic
    first = _day(start) if start else cfg.start_date
    count = days if days is not None else cfg.days
    injected = synthetic.Fault(fault) if fault else None
    landed = []
    for offset in range(count):
        day = date.fromordinal(first.toordinal() + offset)
        path = synthetic.land_day(settings, day, injected)
        landed.append(str(path) if path else f"{day.isoformat()}: not landed")
    return landed


def _training_set_path(settings: Settings, as_of: date, digest: str) -> Path:
    return settings.state_root / "training_sets" / f"as_of={as_of.isoformat()}-{digest}.parquet"


def build_training_set(
    as_of: str | date | datetime,
    prediction_start: str | None = None,
    prediction_end: str | None = None,
) -> dict[str, Any]:
    """Labels known on `as_of` joined point-in-time with the feature service, validated, saved."""
    settings = load_settings()
    start = _day(prediction_start) if prediction_start else None
    end = _day(prediction_end) if prediction_end else None
    if start and end and start > end:
        raise ConfigurationError(
            f"training window starts after it ends: {start.isoformat()} > {end.isoformat()}"
        )
    store = features.apply_repo(settings)
    labels = features.load_labels(settings, _day(as_of), None, start, end)
    frame = features.training_set(settings, labels, store)
    validate.validate_training_set(settings, frame)
    path = _training_set_path(settings, _day(as_of), train.fingerprint(frame))
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
    """Train and register a candidate from a saved training set."""
    frame = pd.read_parquet(training_set_path)
    return asdict(train.train_and_register(load_settings(), frame, hyperparameters, tags))


def _holdout(settings: Settings, training_set_path: str) -> pd.DataFrame:
    frame = pd.read_parquet(training_set_path)
    training = settings.training
    return train.split_by_time(
        frame, settings.dataset.timestamp, training.validation_share, training.holdout_share
    ).holdout


def evaluate_candidate(
    training_set_path: str, version: str, gate_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Gate the candidate against the champion on the training set's holdout days."""
    settings = load_settings()
    holdout = _holdout(settings, training_set_path)
    return asdict(promote.evaluate(settings, version, holdout, gate_overrides))


def check_infra(training_set_path: str, version: str) -> dict[str, Any]:
    """Load the candidate from the registry in a fresh process and score holdout rows."""
    settings = load_settings()
    sample = _holdout(settings, training_set_path).head(settings.gate.infra_check_rows)
    return asdict(promote.infra_check(settings, version, sample, settings.state_root / "infra"))


def promote_candidate(
    version: str, expected_champion: str | None, reason: str, actor: str, source: str = ""
) -> list[dict[str, Any]]:
    """Move `champion` to the candidate (the old one becomes `previous_champion`)."""
    moves = promote.promote(load_settings(), version, expected_champion, reason, actor, source)
    return [asdict(move) for move in moves]


def reject_candidate(version: str, reason: str, actor: str, source: str = "") -> dict[str, Any]:
    """Keep the champion; label the candidate `challenger` with the reason."""
    return asdict(promote.reject(load_settings(), version, reason, actor, source))


def rollback(
    to_version: str | None, reason: str, actor: str, source: str = ""
) -> list[dict[str, Any]]:
    """Restore a previous champion (default: `previous_champion`)."""
    moves = promote.rollback(load_settings(), to_version, reason, actor, source)
    return [asdict(move) for move in moves]


def registry_history() -> list[dict[str, Any]]:
    """The audit trail of every alias move, oldest first."""
    return [asdict(move) for move in promote.history(load_settings())]


def infra_check_here(version: str, sample_path: str) -> dict[str, Any]:
    """The infra check's scoring, in the current (fresh) process."""
    return asdict(promote.score_sample_here(load_settings(), version, Path(sample_path)))


def trigger_reason(default: str, triggering_asset_events: Any) -> str:
    """The reason carried by the asset events that triggered the run, else `default`."""
    reasons = [
        str(event.extra["reason"])
        for events in (triggering_asset_events or {}).values()
        for event in events
        if (event.extra or {}).get("reason")
    ]
    return "; ".join(reasons) or default


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
) -> dict[str, Any]:
    """The training DAG's steps in one process (for the CLI), with the same functions."""
    training_set = build_training_set(as_of, prediction_start, prediction_end)
    candidate = train_model(training_set["path"], hyperparameters, {"reason": reason})
    gate = evaluate_candidate(training_set["path"], candidate["version"])
    infra = check_infra(training_set["path"], candidate["version"])
    if promotion_route(gate, infra) == "reject":
        outcome: Any = reject_candidate(
            candidate["version"], rejection_reason(gate, infra), actor, "cli"
        )
    else:
        outcome = promote_candidate(
            candidate["version"], gate["champion_version"], reason, actor, "cli"
        )
    return {"candidate": candidate, "gate": gate, "infra_check": infra, "outcome": outcome}


def night(requested: str | None, triggering_asset_events: Any, run_after: datetime) -> date:
    """The night a run is about: the form's date, else the latest date among its triggering
    events, else the day before the run."""
    if requested:
        return _day(requested)
    days = [
        _day(str(event.extra["date"]))
        for events in (triggering_asset_events or {}).values()
        for event in events
        if (event.extra or {}).get("date")
    ]
    return max(days) if days else _day(run_after) - timedelta(days=1)


def plan_scoring(
    requested: str | None, triggering_asset_events: Any, run_after: datetime
) -> dict[str, Any]:
    """Fix the champion version and the shards of a night's scoring."""
    day = night(requested, triggering_asset_events, run_after)
    return asdict(score.plan(load_settings(), day))


def score_shard(scoring: dict[str, Any], shard: dict[str, int]) -> dict[str, Any]:
    """Score one shard of a night with the planned model version."""
    return score.score_shard(load_settings(), score.ScoringPlan(**scoring), shard)


def publish_predictions(scoring: dict[str, Any]) -> dict[str, Any]:
    """Publish a night's scored shards as one partition, atomically."""
    return score.publish(load_settings(), score.ScoringPlan(**scoring))


def shadow_score(scoring: dict[str, Any]) -> dict[str, Any]:
    """Shadow-score the challenger; a failure is reported, never raised."""
    settings = load_settings()
    try:
        return score.shadow_score(settings, score.ScoringPlan(**scoring))
    except Exception as error:  # the champion's predictions are already out
        log.warning("shadow scoring of %s failed: %s", scoring["day"], error)
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"}


def check_drift(
    requested: str | None, triggering_asset_events: Any, run_after: datetime
) -> dict[str, Any]:
    """Check a scored night for drift; write its reports and log its metrics."""
    settings = load_settings()
    report = monitor.check(settings, night(requested, triggering_asset_events, run_after))
    page = monitor.write_report(settings, report)
    run_id = monitor.log_to_mlflow(settings, report)
    log.info("drift report of %s: %s", report.day, page)
    return asdict(report) | {"report_html": str(page), "mlflow_run_id": run_id}


def retrain_request(
    report: dict[str, Any], last_request_day: str | None, active_training_runs: int
) -> dict[str, Any] | None:
    """The `retrain_request` event's extra, or None (no alarm, cooling down, or training)."""
    if not report["alarm"]:
        return None
    day = _day(report["day"])
    cooldown = load_settings().drift.retrain_cooldown
    if active_training_runs:
        log.info("drift alarm on %s: a training run is already active", day)
        return None
    if last_request_day and day - _day(last_request_day) < cooldown:
        log.info(
            "drift alarm on %s: last request on %s, within %s", day, last_request_day, cooldown
        )
        return None
    # Per feature: PSI (numeric) or Jensen-Shannon (categorical), and the normed Wasserstein.
    drifted = {
        f["feature"]: {
            "score": round(f["score"], 4),
            "wasserstein": None if f["wasserstein"] is None else round(f["wasserstein"], 4),
        }
        for f in report["features"]
        if f["level"] == "alert"
    }
    return {
        "reason": f"drift on {day.isoformat()}: {'; '.join(report['reasons'])}",
        "date": day.isoformat(),
        "drifted_features": drifted,
        "prediction_psi": round(report["prediction_psi"], 4),
        "model_version": report["model_version"],
    }
