"""Failure alerts for Airflow task callbacks: always logged and recorded, optionally posted.

Every alert is logged at ERROR and appended to the alert file under the state
root. With `MLOPS_ALERTS__WEBHOOK_URL` set, it is also posted as JSON
(``{"text": ...}``, the shape Slack incoming webhooks and most chat tools take).
A broken alert sink is logged, never raised: alerting must not mask the failure. The
webhook's URL is a credential (its path or query carries the token): only its host is
ever logged.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pipelines.security import url_host
from pipelines.settings import Settings, load_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """One failed task, in the words an on-call engineer needs."""

    dag_id: str
    task_id: str
    run_id: str
    partition_key: str | None
    logical_date: str | None
    try_number: int | None
    error: str
    raised_at: str

    def text(self) -> str:
        """One-paragraph message for chat or the log."""
        night = f"night {self.partition_key}, " if self.partition_key else ""
        return (
            f"[airflow] {self.dag_id}.{self.task_id} failed ({night}run {self.run_id}, "
            f"try {self.try_number}): {self.error}"
        )


def alert_from_context(context: Any, detail: str | None = None) -> Alert:
    """Build an alert from an Airflow task callback context; `detail` replaces the error."""
    ti = context.get("ti") or context.get("task_instance")
    logical = context.get("logical_date")
    return Alert(
        dag_id=str(getattr(ti, "dag_id", context.get("dag_id", "?"))),
        task_id=str(getattr(ti, "task_id", "?")),
        run_id=str(getattr(ti, "run_id", context.get("run_id", "?"))),
        partition_key=context.get("partition_key"),
        logical_date=logical.isoformat() if logical else None,
        try_number=getattr(ti, "try_number", None),
        error=detail or str(context.get("exception") or "unknown error"),
        raised_at=datetime.now(UTC).isoformat(),
    )


def send(alert: Alert, settings: Settings) -> None:
    """Log, record and (if configured) post one alert."""
    log.error("%s", alert.text())
    settings.alerts_file.parent.mkdir(parents=True, exist_ok=True)
    with settings.alerts_file.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(alert)) + "\n")
    url = settings.alerts.webhook_url
    if not url:
        return
    body = json.dumps({"text": alert.text(), "alert": asdict(alert)}).encode()
    try:
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=settings.alerts.webhook_timeout_seconds):
            pass
    except OSError as error:  # refused, timed out, an error status: none quotes the URL
        log.error("alert webhook at %s failed: %s", url_host(url), error)
    except (ValueError, http.client.HTTPException) as error:  # a bad URL or answer: may quote it
        log.error("alert webhook at %s failed: %s", url_host(url), type(error).__name__)


def notify_failure(context: Any, detail: str | None = None) -> None:
    """Airflow `on_failure_callback`: raise the alert for a failed task."""
    send(alert_from_context(context, detail), load_settings())
