"""`python -m pipelines`: the CLI runs the same jobs as the DAGs, with clear errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from pipelines import cli
from pipelines.io.orchestrator import LocalAirflow
from pipelines.settings import load_settings
from tests.unit.test_security import open_to_others

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_generate_validate_publish_materialize_a_day(settings):
    # Given two generated days
    generated = _cli("generate", "--start", "2026-01-01", "--days", "2")
    assert generated.returncode == 0, generated.stderr
    assert len(json.loads(generated.stdout)) == 2

    # When the second day goes through the gate and into the online store
    validated = _cli("validate", "2026-01-02")
    published = _cli("publish", "2026-01-02")
    materialized = _cli("materialize", "2026-01-02")

    # Then each step reports what it did
    assert validated.returncode == 0, validated.stderr
    assert json.loads(validated.stdout)["rows"] == settings.synthetic.customers
    assert published.returncode == 0 and "validated" in json.loads(published.stdout)
    assert materialized.returncode == 0, materialized.stderr
    assert json.loads(materialized.stdout)["entities_written"] == settings.synthetic.customers

    # And what they wrote (the lake, Feast's registry and SQLite online store, Great
    # Expectations' results) is their owner's alone, in a state root only they can enter
    assert stat.S_IMODE(settings.state_root.stat().st_mode) == 0o700
    assert (settings.feast_root / "online_store.db").exists()
    assert open_to_others(settings.state_root) == {}


def test_a_failing_gate_exits_1_and_names_the_failure(settings):
    _cli("generate", "--start", "2026-01-01", "--days", "1", "--fault", "duplicate_keys")

    result = _cli("validate", "2026-01-01")

    assert result.returncode == 1
    assert "expect_column_values_to_be_unique" in result.stderr
    assert "column 'customer_id'" in result.stderr


def test_a_missing_partition_exits_1_and_names_the_path(settings):
    result = _cli("validate", "2026-03-01")

    assert result.returncode == 1
    assert "has not landed" in result.stderr and "date=2026-03-01" in result.stderr


def test_settings_are_printed_as_json_without_their_secrets(settings, monkeypatch):
    # Given settings with credentials in their URLs
    monkeypatch.setenv("MLOPS_AIRFLOW__METADATA_URL", "postgresql://airflow:PGSECRET@db/airflow")
    monkeypatch.setenv("MLOPS_FEAST__REDIS_CONNECTION", "redis:6379,password=REDISSECRET")
    monkeypatch.setenv("MLOPS_ALERTS__WEBHOOK_URL", "https://hooks.example.com/HOOKTOKEN")

    result = _cli("settings")

    # Then they are printed with every secret redacted
    printed = json.loads(result.stdout)
    assert printed["state_root"] == str(settings.state_root)
    assert printed["airflow"]["metadata_url"] == "postgresql://airflow:***@db/airflow"
    assert printed["alerts"]["webhook_url"] == "https://hooks.example.com/***"
    assert "SECRET" not in result.stdout and "TOKEN" not in result.stdout


def test_the_mlflow_database_the_cli_creates_is_private(settings):
    result = _cli("registry", "history")

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((settings.mlflow_root / "mlflow.db").stat().st_mode) == 0o600
    assert open_to_others(settings.state_root) == {}


def test_the_ui_listens_on_loopback_and_says_where(settings, monkeypatch, capsys):
    # Given a port of the user's choice
    monkeypatch.setenv("MLOPS_AIRFLOW__UI_PORT", "8193")

    # When `python -m pipelines ui` sets up Airflow and introduces it
    airflow = LocalAirflow(load_settings(), {}, on_ui_address=True)
    cli._print_login(airflow)

    # Then its API server listens on loopback at that port, where tasks report, and the user
    # is told that address and where the admin's password is (never the password)
    env = airflow.env
    assert (env["AIRFLOW__API__HOST"], env["AIRFLOW__API__PORT"]) == ("127.0.0.1", "8193")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8193/execution/"
    printed = capsys.readouterr().out
    assert "Airflow UI: http://127.0.0.1:8193 " in printed
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] in printed
    assert "warning" not in printed

    # And listening on every interface is the user's explicit choice, and is warned about
    monkeypatch.setenv("MLOPS_AIRFLOW__UI_HOST", "0.0.0.0")
    exposed = LocalAirflow(load_settings(), {}, on_ui_address=True)
    cli._print_login(exposed)
    assert exposed.env["AIRFLOW__API__HOST"] == "0.0.0.0"
    printed = capsys.readouterr().out
    assert "Airflow UI: http://127.0.0.1:8193 " in printed
    assert "warning: 0.0.0.0 is reachable from other machines" in printed

    # While the settings' own Airflow commands (`python -m pipelines airflow -- ...`) get the
    # same address
    assert load_settings().airflow_env()["AIRFLOW__API__HOST"] == "0.0.0.0"
