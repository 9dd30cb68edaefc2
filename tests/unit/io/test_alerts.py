"""Failure alerts: logged, recorded under the state root, and posted to a webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from pipelines.io import alerts
from pipelines.settings import load_settings


def _context(error: str) -> dict:
    ti = SimpleNamespace(dag_id="feature_pipeline", task_id="validate", run_id="r1", try_number=1)
    return {"ti": ti, "exception": RuntimeError(error), "logical_date": None}


def test_failure_is_recorded_in_the_alert_file(settings):
    # When a task fails
    alerts.notify_failure(_context("3 expectations failed"))

    # Then the alert file names the task, the run and the error
    (line,) = settings.alerts_file.read_text().splitlines()
    alert = json.loads(line)
    assert (alert["dag_id"], alert["task_id"], alert["run_id"]) == (
        "feature_pipeline",
        "validate",
        "r1",
    )
    assert alert["error"] == "3 expectations failed"


def test_failure_is_posted_to_the_webhook(settings, monkeypatch):
    # Given a webhook listening on loopback
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    monkeypatch.setenv("MLOPS_ALERTS__WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")

    # When a task fails
    alerts.notify_failure(_context("partition has not landed"))
    thread.join(timeout=10)
    server.server_close()

    # Then the webhook got a chat-ready text and the structured alert
    (payload,) = received
    assert "feature_pipeline.validate failed" in payload["text"]
    assert payload["alert"]["error"] == "partition has not landed"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:9/services/T0/B0/HOOKTOKEN?token=QUERYTOKEN", "127.0.0.1"),
        ("http://hooks.example.com:HOOKTOKEN/services", "hooks.example.com"),
        ("http://hooks.example.com/services/HOOK TOKEN", "hooks.example.com"),
        ("hooks.example.com/services/HOOKTOKEN", "a URL without a host"),
    ],
)
def test_a_broken_webhook_never_masks_the_failure_nor_logs_its_token(
    settings, monkeypatch, caplog, url, host
):
    # Given a webhook that is unreachable or not even a valid URL, its token in it
    monkeypatch.setenv("MLOPS_ALERTS__WEBHOOK_URL", url)
    monkeypatch.setenv("MLOPS_ALERTS__WEBHOOK_TIMEOUT_SECONDS", "1")

    # When a task fails
    alerts.notify_failure(_context("boom"))

    # Then the alert is recorded, and the log names the webhook's host, never its URL
    assert json.loads(load_settings().alerts_file.read_text())["error"] == "boom"
    (failure,) = [r.getMessage() for r in caplog.records if "webhook" in r.getMessage()]
    assert failure.startswith(f"alert webhook at {host} failed: ")
    assert "TOKEN" not in caplog.text


@pytest.mark.parametrize("context", [{}, {"exception": None}])
def test_alert_from_a_sparse_context_still_reads(context):
    alert = alerts.alert_from_context(context)
    assert alert.error == "unknown error"
    assert "failed" in alert.text()


def test_a_night_that_never_landed_is_named_with_its_path(settings):
    from airflow.sdk.exceptions import AirflowSensorTimeout

    from pipelines.jobs import feature_pipeline

    # When the landing check of a night times out, the alert names the night and the path
    message = feature_pipeline.landing_alert("2026-01-05", AirflowSensorTimeout("timed out"))
    assert "date=2026-01-05 has not landed within 6:00:00" in message
    assert str(settings.raw_root / "activity" / "date=2026-01-05") in message
    # ... and says so when an earlier partition of it was quarantined
    quarantine = settings.quarantine_root / "activity" / "date=2026-01-05"
    quarantine.mkdir(parents=True)
    (quarantine / "validation_result.json").write_text("{}")
    assert "quarantined" in feature_pipeline.landing_alert(
        "2026-01-05", AirflowSensorTimeout("timed out")
    )
    # Any other failure of the check is reported as itself
    assert feature_pipeline.landing_alert("2026-01-05", PermissionError("denied")) is None
    assert feature_pipeline.landing_alert(None, AirflowSensorTimeout("timed out")) is None


def test_an_alert_names_the_night_of_its_run(settings):
    context = _context("bad bytes") | {"partition_key": "2026-01-05"}

    alerts.notify_failure(context)

    (line,) = settings.alerts_file.read_text().splitlines()
    alert = json.loads(line)
    assert alert["partition_key"] == "2026-01-05"
    assert "night 2026-01-05" in alerts.Alert(**alert).text()
