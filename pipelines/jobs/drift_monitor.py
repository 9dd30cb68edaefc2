"""Entry points of the `drift_monitor` DAG's tasks."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipelines import contracts
from pipelines.settings import load_settings

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def check_drift(night: str | date | None) -> dict[str, Any]:
    """Check a scored night for drift; write its reports and log its metrics."""
    from pipelines.monitoring import nightly, reporting

    settings = load_settings()
    report = nightly.check(settings, contracts.as_night(night))
    page = reporting.write_report(settings, report)
    run_id = reporting.log_to_mlflow(settings, report)
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
        if night and abs(day - contracts.as_night(str(night))) < cooldown:
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
    day = contracts.as_night(report["day"])
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
