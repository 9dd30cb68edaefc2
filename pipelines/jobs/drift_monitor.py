"""Entry points of the `drift_monitor` DAG's tasks: payloads in and out as XCom values."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from pipelines import contracts
from pipelines.contracts import XCom
from pipelines.settings import load_settings

log = logging.getLogger(__name__)


def check_drift(night: str | date | None) -> dict[str, Any]:
    """Check a scored night for drift; write its reports and log its metrics (a
    `DriftReport`)."""
    from pipelines.monitoring import nightly, reporting

    settings = load_settings()
    report = nightly.check(settings, contracts.as_night(night))
    page = reporting.write_report(settings, report)
    run_id = reporting.log_to_mlflow(settings, report)
    log.info("drift report of %s: %s", report.day, page)
    return replace(report, report_html=str(page), mlflow_run_id=run_id).to_xcom()


def _requested(event: Any) -> tuple[str | None, datetime]:
    """The night an earlier `retrain_request` event was for, and when it was made."""
    night = (event.extra or {}).get("date")
    return (str(night) if night else None), event.timestamp


def retrain_request(
    report: XCom,
    earlier_requests: Iterable[Any],
    active_training_runs: int,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """The `retrain_request` event's extra (a `RetrainRequest`), or None: no alarm, cooling
    down, or training. `earlier_requests` are the asset's earlier events."""
    from pipelines.monitoring import retraining

    request = retraining.retrain_request(
        contracts.DriftReport.from_xcom(report),
        [_requested(event) for event in earlier_requests],
        active_training_runs,
        load_settings().drift.retrain_cooldown,
        now or datetime.now(UTC),
    )
    return None if request is None else request.to_xcom()


def training_conf(request: XCom) -> dict[str, Any]:
    """The conf of the `training` run a retrain request starts."""
    return contracts.RetrainRequest.from_xcom(request).training_conf()
