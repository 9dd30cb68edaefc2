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
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import contracts
from pipelines.errors import ConfigurationError
from pipelines.settings import Settings, load_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def _day(value: str | date | datetime) -> date:
    """The night a job is about: a date, or a run's partition key (strict YYYY-MM-DD)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return contracts.night(value)


def raw_partition_in_lake(night: str | date | None) -> str:
    """The night's raw data files, as a glob relative to the lake's root."""
    from pipelines import lake

    settings = load_settings()
    folder = lake.partition_dir(settings.raw_root, settings.dataset.raw_dataset, _day(night))
    # Python's glob skips dot-names, so a file still being written aside is not "landed".
    return str(folder.relative_to(settings.lake_root) / "*.parquet")


def landing_alert(night: str | None, error: BaseException | None) -> str | None:
    """What the alert says when a night's partition never landed; None when the landing
    check failed for another reason (then the error itself is the alert)."""
    from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferralTimeout

    from pipelines import lake, validate

    if not isinstance(error, AirflowSensorTimeout | TaskDeferralTimeout) or not night:
        return None
    settings = load_settings()
    day = _day(night)
    path = lake.partition_dir(settings.raw_root, settings.dataset.raw_dataset, day)
    waited = timedelta(seconds=settings.schedule.landing_timeout_seconds)
    message = (
        f"raw partition {settings.dataset.raw_dataset} date={day.isoformat()} has not landed "
        f"within {waited}: expected parquet files in {path}"
    )
    quarantined = validate.quarantine_result(settings, day)
    if quarantined.exists():
        message += f" (an earlier one was quarantined, see {quarantined}: land a corrected one)"
    return message


def validate_partition(night: str | date) -> dict[str, Any]:
    """Run the validation gate on a night's raw partition (quarantines it on failure)."""
    from pipelines import validate

    return asdict(validate.validate_partition(load_settings(), _day(night)))


def publish_partition(night: str | date) -> str:
    """Publish a night's staged partition into the validated zone (again: a no-op)."""
    from pipelines import validate

    return str(validate.publish_partition(load_settings(), _day(night)))


def materialize(night: str | date) -> dict[str, Any]:
    """Apply the Feast repo, then materialize the night's window into the online store."""
    from pipelines import features, validate

    settings = load_settings()
    validate.refuse_future_night(settings, _day(night))
    store = features.apply_repo(settings)
    start, end = features.materialization_window(settings, *features.day_interval(_day(night)))
    return asdict(features.materialize_window(settings, start, end, store))


def generate(
    start: str | date | None = None,
    days: int | None = None,
    fault: str | None = None,
) -> list[str]:
    """Land generated raw partitions; `fault` (a `synthetic.Fault` value) applies to each day."""
    from pipelines import synthetic

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
    import pyarrow as pa

    from pipelines import features, lake, train, validate

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
    """Train and register a candidate from a saved training set (first closing, as failed,
    the runs of training processes that were killed)."""
    import pandas as pd

    from pipelines import tracking, train

    settings = load_settings()
    tracking.close_abandoned_runs(settings, settings.training.model_name)
    frame = pd.read_parquet(training_set_path)
    labelled = {**(tags or {}), **tracking.process_tags()}
    return asdict(train.train_and_register(settings, frame, hyperparameters, labelled))


def _holdout(settings: Settings, training_set_path: str) -> pd.DataFrame:
    import pandas as pd

    from pipelines import train

    frame = pd.read_parquet(training_set_path)
    training = settings.training
    return train.split_by_time(
        frame, settings.dataset.timestamp, training.validation_share, training.holdout_share
    ).holdout


def evaluate_candidate(
    training_set_path: str, version: str, gate_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Gate the candidate against the champion on the training set's holdout days."""
    from pipelines import promote

    settings = load_settings()
    holdout = _holdout(settings, training_set_path)
    return asdict(promote.evaluate(settings, version, holdout, gate_overrides))


def check_infra(training_set_path: str, version: str) -> dict[str, Any]:
    """Load the candidate from the registry in a fresh process and score holdout rows."""
    from pipelines import promote

    settings = load_settings()
    sample = _holdout(settings, training_set_path).head(settings.gate.infra_check_rows)
    return asdict(promote.infra_check(settings, version, sample, settings.state_root / "infra"))


def promote_candidate(
    version: str, expected_champion: str | None, reason: str, actor: str, source: str = ""
) -> list[dict[str, Any]]:
    """Move `champion` to the candidate (the old one becomes `previous_champion`)."""
    from pipelines import promote

    moves = promote.promote(load_settings(), version, expected_champion, reason, actor, source)
    return [asdict(move) for move in moves]


def reject_candidate(version: str, reason: str, actor: str, source: str = "") -> dict[str, Any]:
    """Keep the champion; label the candidate `challenger` with the reason."""
    from pipelines import promote

    return asdict(promote.reject(load_settings(), version, reason, actor, source))


def rollback_target(to_version: str | None, run_id: str = "") -> dict[str, Any]:
    """Decide a rollback once: the version to restore and the champion it replaces (the
    Airflow run `run_id` keeps what it decided before, when it already moved an alias)."""
    from pipelines import promote

    return asdict(promote.rollback_target(load_settings(), to_version, run_id))


def apply_rollback(
    target: dict[str, Any], reason: str, actor: str, source: str = ""
) -> list[dict[str, Any]]:
    """Carry out a decided rollback; again, it only completes it (never a second rollback)."""
    from pipelines import promote

    decided = promote.RollbackTarget(**target)
    moves = promote.apply_rollback(load_settings(), decided, reason, actor, source)
    return [asdict(move) for move in moves]


def rollback(
    to_version: str | None, reason: str, actor: str, source: str = ""
) -> list[dict[str, Any]]:
    """Restore a previous champion (default: `previous_champion`)."""
    return apply_rollback(rollback_target(to_version), reason, actor, source)


def registry_history() -> list[dict[str, Any]]:
    """The audit trail of every alias move, oldest first."""
    from pipelines import promote

    return [asdict(move) for move in promote.history(load_settings())]


def infra_check_here(version: str, sample_path: str) -> dict[str, Any]:
    """The infra check's scoring, in the current (fresh) process."""
    from pipelines import promote

    return asdict(promote.score_sample_here(load_settings(), version, Path(sample_path)))


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


def plan_scoring(night: str | date | None) -> dict[str, Any]:
    """Fix the champion version and the shards of a night's scoring."""
    from pipelines import score

    return asdict(score.plan(load_settings(), _day(night)))


def score_shard(scoring: dict[str, Any], shard: dict[str, int]) -> dict[str, Any]:
    """Score one shard of a night with the planned model version."""
    from pipelines import score

    return score.score_shard(load_settings(), score.ScoringPlan(**scoring), shard)


def publish_predictions(scoring: dict[str, Any]) -> dict[str, Any]:
    """Publish a night's scored shards as one partition, atomically (again: a no-op)."""
    from pipelines import score

    return score.publish(load_settings(), score.ScoringPlan(**scoring))


def shadow_score(scoring: dict[str, Any]) -> dict[str, Any]:
    """Shadow-score the challenger; a failure is reported, never raised."""
    from pipelines import score

    settings = load_settings()
    try:
        return score.shadow_score(settings, score.ScoringPlan(**scoring))
    except Exception as error:  # the champion's predictions are already out
        log.warning("shadow scoring of %s failed: %s", scoring["day"], error)
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"}


def check_drift(night: str | date | None) -> dict[str, Any]:
    """Check a scored night for drift; write its reports and log its metrics."""
    from pipelines import monitor

    settings = load_settings()
    report = monitor.check(settings, _day(night))
    page = monitor.write_report(settings, report)
    run_id = monitor.log_to_mlflow(settings, report)
    log.info("drift report of %s: %s", report.day, page)
    return asdict(report) | {"report_html": str(page), "mlflow_run_id": run_id}


def _cooling_down(
    day: date, earlier_requests: Iterable[Any], cooldown: timedelta, now: datetime
) -> list[str]:
    """Earlier requests (asset events: `extra["date"]`, `timestamp`) within the cooldown of
    this night, on either side, or made within the cooldown of now."""
    near = []
    for event in earlier_requests:
        night = (event.extra or {}).get("date")
        if night and abs(day - _day(str(night))) < cooldown:
            near.append(f"for {night}")
        elif now - event.timestamp < cooldown:
            near.append(f"at {event.timestamp:%Y-%m-%d %H:%M}")
    return near


def retrain_request(
    report: dict[str, Any],
    earlier_requests: Iterable[Any],
    active_training_runs: int,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """The `retrain_request` event's extra, or None (no alarm, cooling down, or training).

    At most one request per cooldown, judged on the nights of earlier requests (on both
    sides: nights scored out of order request no more than nights in order) and on when
    they were made (a backfill of many drifted nights requests once).
    """
    if not report["alarm"]:
        return None
    day = _day(report["day"])
    cooldown = load_settings().drift.retrain_cooldown
    if active_training_runs:
        log.info("drift alarm on %s: a training run is already active", day)
        return None
    near = _cooling_down(day, earlier_requests, cooldown, now or datetime.now(UTC))
    if near:
        log.info("drift alarm on %s: retraining requested %s, within %s", day, near, cooldown)
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
    reason = f"drift on {day.isoformat()}: {'; '.join(report['reasons'])}"
    if len(reason) > contracts.MAX_REASON_CHARS:
        reason = reason[: contracts.MAX_REASON_CHARS - 1] + "…"
    return {
        "reason": reason,
        "date": day.isoformat(),
        "drifted_features": drifted,
        "prediction_psi": round(report["prediction_psi"], 4),
        "model_version": report["model_version"],
    }
