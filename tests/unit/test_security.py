"""Secrets stay with their owner: a private state root, private files, redacted output."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import psutil
import pytest

from pipelines import security
from pipelines.io.orchestrator import (
    LOCAL_COMPONENTS,
    STARTUP_TIMEOUT,
    AirflowApi,
    LocalAirflow,
    free_port,
    wait_for,
)
from pipelines.settings import Settings, load_settings

SECRETS = ("PGSECRET", "REDISSECRET", "HOOKTOKEN", "QUERYTOKEN", "LOCKSECRET")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def open_to_others(root: Path) -> dict[str, str]:
    """Every file or folder below `root` that its group or other users may use, with its mode."""
    found = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(folder, name)
            if not path.is_symlink() and _mode(path) & 0o077:
                found[str(path.relative_to(root))] = oct(_mode(path))
    return found


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg2://airflow:PGSECRET@postgres:5432/airflow",
            "postgresql+psycopg2://airflow:***@postgres:5432/airflow",
        ),
        ("redis://:REDISSECRET@redis:6379/0", "redis://:***@redis:6379/0"),
        (
            "db+postgresql://u:PGSECRET@db/airflow?sslmode=require&password=QUERYTOKEN",
            "db+postgresql://u:***@db/airflow?sslmode=require&password=***",
        ),
        ("redis:6379,password=REDISSECRET,ssl=true", "redis:6379,password=***,ssl=true"),
        ("https://hooks.slack.com/services/T0/B0/HOOKTOKEN", "https://hooks.slack.com/***"),
        ("https://chat.example.com?token=QUERYTOKEN", "https://chat.example.com/***"),
        ("https://HOOKTOKEN@chat.example.com:8443/", "https://***@chat.example.com:8443/"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("sqlite:////srv/state/mlflow/mlflow.db", "sqlite:////srv/state/mlflow/mlflow.db"),
        (
            "postgresql://postgres@127.0.0.1:5432/feast",
            "postgresql://postgres@127.0.0.1:5432/feast",
        ),
        ("/srv/state", "/srv/state"),
        ("http://[HOOKTOKEN/x", "***"),
    ],
)
def test_a_url_is_shown_without_its_secrets(url: str, shown: str) -> None:
    assert security.redact_url(url) == shown


def test_settings_are_shown_with_every_credential_redacted(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the production profile, with passwords in its URLs and a webhook with a token
    production = {
        "MLOPS_PROFILE": "production",
        "MLOPS_AIRFLOW__METADATA_URL": "postgresql+psycopg2://airflow:PGSECRET@db:5432/airflow",
        "MLOPS_AIRFLOW__CELERY_BROKER_URL": "redis://:REDISSECRET@redis:6379/0",
        "MLOPS_AIRFLOW__CELERY_RESULT_BACKEND": "db+postgresql://airflow:PGSECRET@db/airflow",
        "MLOPS_MLFLOW__TRACKING_URI": "http://mlflow:5000",
        "MLOPS_MLFLOW__LOCK_URL": "postgresql://mlflow:LOCKSECRET@db:5432/mlflow",
        "MLOPS_FEAST__REDIS_CONNECTION": "redis:6379,password=REDISSECRET",
        "MLOPS_FEAST__REGISTRY_SQL_URL": "postgresql+psycopg://feast:PGSECRET@db:5432/feast",
        "MLOPS_ALERTS__WEBHOOK_URL": "https://hooks.example.com/services/HOOKTOKEN?k=QUERYTOKEN",
    }
    for name, value in production.items():
        monkeypatch.setenv(name, value)

    # When the settings are prepared for showing
    shown = security.redacted_settings(load_settings())

    # Then no secret is left, and what tells where things are is
    text = json.dumps(shown)
    assert [secret for secret in SECRETS if secret in text] == []
    assert shown["airflow"]["metadata_url"] == "postgresql+psycopg2://airflow:***@db:5432/airflow"
    assert shown["feast"]["redis_connection"] == "redis:6379,password=***"
    assert shown["alerts"]["webhook_url"] == "https://hooks.example.com/***"
    assert shown["mlflow"]["tracking_uri"] == "http://mlflow:5000"
    assert shown["state_root"] == str(settings.state_root)


def test_the_state_root_is_made_private_whether_new_or_not(tmp_path: Path) -> None:
    # A new state root (and the folders above it) is created enterable by its owner only
    new = tmp_path / "deep" / "state"
    security.private_state_root(new)
    assert _mode(new) == 0o700

    # An existing one that others could enter is closed
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    security.private_state_root(shared)
    assert _mode(shared) == 0o700


def test_a_private_file_is_the_owners_alone_whatever_the_umask(tmp_path: Path) -> None:
    log = tmp_path / "api-server.log"
    log.write_text("an earlier run's log")
    log.chmod(0o644)
    previous = os.umask(0)
    try:
        with security.open_private(log) as file:
            file.write(b"Password for user 'admin': ...")
    finally:
        os.umask(previous)
    assert _mode(log) == 0o600
    assert log.read_bytes() == b"Password for user 'admin': ..."


def _running(api: AirflowApi) -> bool:
    health = api.client.get("/api/v2/monitor/health").json()
    return all(health[job]["status"] == "healthy" for job in ("scheduler", "triggerer"))


def _listening(airflow: LocalAirflow) -> set[tuple[str, int]]:
    """The addresses Airflow's processes listen on (found by environment or process group)."""
    airflow.check_alive()
    found = set()
    for connection in psutil.net_connections(kind="inet"):
        if connection.status != psutil.CONN_LISTEN or connection.pid is None:
            continue
        try:
            ours = connection.pid in airflow.seen or os.getpgid(connection.pid) == airflow.group
        except ProcessLookupError:
            continue
        if ours:
            found.add((connection.laddr.ip, connection.laddr.port))
    return found


def test_airflow_as_make_airflow_runs_it_is_private_and_listens_on_loopback_only(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Airflow's components as `python -m pipelines ui` runs them (all but the
    # dag-processor, which listens nowhere), on a fresh state root, started by a process
    # whose umask lets anyone read what it creates
    port = free_port()
    monkeypatch.setenv("MLOPS_AIRFLOW__UI_PORT", str(port))
    components = {name: LOCAL_COMPONENTS[name] for name in ("api-server", "scheduler", "triggerer")}
    airflow = LocalAirflow(load_settings(), {}, components=components, on_ui_address=True)
    api = AirflowApi(airflow)
    previous = os.umask(0o022)
    try:
        airflow.start()
        # When they are up (a log server, were there one, starts before its component's job)
        api.admin()
        wait_for("the scheduler and the triggerer", lambda: _running(api), STARTUP_TIMEOUT, 2)
        listening = _listening(airflow)
    finally:
        os.umask(previous)
        api.close()
        survivors = airflow.stop()
    assert survivors == []

    # Then the API server alone listens, on loopback, at the settings' port
    assert listening == {("127.0.0.1", port)}
    # and the state root, the metadata database and the passwords file are their owner's
    home = settings.airflow_home
    assert _mode(settings.state_root) == 0o700
    assert _mode(home / "airflow.db") == 0o600
    passwords = home / "simple_auth_manager_passwords.json"
    assert _mode(passwords) == 0o600
    # as is everything else they wrote; and no log of theirs holds the admin's password
    assert open_to_others(settings.state_root) == {}
    (password,) = json.loads(passwords.read_text()).values()
    logs = [path for path in settings.state_root.rglob("*.log") if password in path.read_text()]
    assert logs == []
