"""When a drift alarm asks for retraining: at most once per cooldown, never beside a run."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from pipelines import contracts
from pipelines.contracts import DriftReport, RetrainRequest

log = logging.getLogger(__name__)


def cooling_down(
    day: date,
    earlier_requests: Iterable[tuple[str | None, datetime]],
    cooldown: timedelta,
    now: datetime,
) -> list[str]:
    """Earlier requests (the night each was for, when it was made) within the cooldown of
    this night, on either side, or made within the cooldown of now."""
    near = []
    for night, made in earlier_requests:
        if night and abs(day - contracts.as_night(night)) < cooldown:
            near.append(f"for {night}")
        elif now - made < cooldown:
            near.append(f"at {made:%Y-%m-%d %H:%M}")
    return near


def _reason(report: DriftReport) -> str:
    reason = f"drift on {report.day}: {'; '.join(report.reasons)}"
    if len(reason) > contracts.MAX_REASON_CHARS:
        reason = reason[: contracts.MAX_REASON_CHARS - 1] + "…"
    return reason


def retrain_request(
    report: DriftReport,
    earlier_requests: Iterable[tuple[str | None, datetime]],
    active_training_runs: int,
    cooldown: timedelta,
    now: datetime,
) -> RetrainRequest | None:
    """The request a night's drift check makes, or None (no alarm, cooling down, training).

    At most one request per cooldown, judged on the nights of earlier requests (on both
    sides: nights scored out of order request no more than nights in order) and on when
    they were made (a backfill of many drifted nights requests once).
    """
    if not report.alarm:
        return None
    day = contracts.as_night(report.day)
    if active_training_runs:
        log.info("drift alarm on %s: a training run is already active", day)
        return None
    near = cooling_down(day, earlier_requests, cooldown, now)
    if near:
        log.info("drift alarm on %s: retraining requested %s, within %s", day, near, cooldown)
        return None
    # Per feature: PSI (numeric) or Jensen-Shannon (categorical), and the normed Wasserstein.
    drifted = {
        item.feature: {
            "score": round(item.score, 4),
            "wasserstein": None if item.wasserstein is None else round(item.wasserstein, 4),
        }
        for item in report.drifted
    }
    return RetrainRequest(
        reason=_reason(report),
        date=day.isoformat(),
        drifted_features=drifted,
        prediction_psi=round(report.prediction_psi, 4),
        model_version=report.model_version,
    )
