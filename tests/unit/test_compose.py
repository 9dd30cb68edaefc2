"""`docker-compose.yml` is checked here, since no Docker engine runs the tests."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from pipelines import features
from pipelines.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# `${VAR}` is filled by compose from .env; `$${VAR}` is left to the container's shell.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}")
SECRET = re.compile(r"PASSWORD|SECRET|FERNET")
ONE_SHOT = {"airflow-init"}


def _environment(service: dict) -> dict[str, str]:
    return {key: str(value) for key, value in (service.get("environment") or {}).items()}


def _substituted(value: str) -> str:
    """Variables as compose fills them: a placeholder for each value `.env` must give, the
    default for an optional one (`${NAME:-default}`)."""

    def fill(match: re.Match[str]) -> str:
        default = match.group(2) or ""
        if default.startswith((":-", "-")):
            return default.removeprefix(":").removeprefix("-")
        return f"<{match.group(1).lower()}>"

    return VARIABLE.sub(fill, value)


def test_every_image_is_pinned():
    for name, service in SERVICES.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name} uses an unpinned image {image}"


@pytest.mark.parametrize("name", sorted(set(SERVICES) - ONE_SHOT))
def test_long_running_services_have_healthchecks_and_restart_policies(name):
    service = SERVICES[name]
    assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert service.get("restart") in ("unless-stopped", "always", "on-failure")


def test_no_secret_has_a_default_and_every_variable_is_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    used = {match.group(1): match.group(2) or "" for match in VARIABLE.finditer(text)}
    assert set(used) <= set(example), f"missing from .env.example: {set(used) - set(example)}"
    assert all(value == "" for value in example.values()), ".env.example must not hold secrets"
    for variable in ("POSTGRES_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_FERNET_KEY"):
        assert not used[variable].startswith(":-"), f"{variable} has a default"
    for name, service in SERVICES.items():
        for key, value in _environment(service).items():
            if SECRET.search(key) and not key.endswith("_FILE"):
                assert VARIABLE.fullmatch(value), f"{name}: {key} is not taken from .env"


def _settings_field(path: list[str]) -> bool:
    model: Any = Settings
    for part in path:
        if dataclasses.is_dataclass(model):
            fields = {field.name: field.type for field in dataclasses.fields(model)}
        else:
            fields = {name: field.annotation for name, field in model.model_fields.items()}
        if part not in fields:
            return False
        model = fields[part]
    return True


def test_every_pipeline_variable_names_a_settings_field():
    for name, service in SERVICES.items():
        for key in _environment(service):
            if key.startswith("MLOPS_"):
                path = key.removeprefix("MLOPS_").lower().split("__")
                assert _settings_field(path), f"{name}: {key} is not a settings field"


def test_production_settings_point_at_the_compose_services(monkeypatch):
    # Given the environment a worker container gets
    environment = _environment(SERVICES["airflow-worker"])
    for key, value in environment.items():
        if key.startswith("MLOPS_"):
            monkeypatch.setenv(key, _substituted(value))

    # When the pipeline loads its settings
    settings = load_settings()
    config = features.repo_config_dict(settings)

    # Then every service it talks to is a service of the stack, on the port it serves
    assert settings.profile == "production"
    tracking = urlparse(settings.tracking_uri)
    assert tracking.hostname == "mlflow" and "5000" in SERVICES["mlflow"]["command"]
    redis_host, redis_port = config["online_store"]["connection_string"].split(":")
    assert redis_host == "redis" and f"{redis_port}:{redis_port}" in SERVICES["redis"]["ports"]
    registry = urlparse(config["registry"]["path"])
    assert registry.hostname == "postgres" and registry.port == 5432
    assert registry.path == "/feast"
    databases = (ROOT / "deploy" / "postgres-init.sql").read_text()
    for database in ("airflow", "mlflow", "feast"):
        assert f"CREATE DATABASE {database};" in databases
    airflow_db = urlparse(_substituted(environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
    assert airflow_db.hostname == "postgres" and airflow_db.path == "/airflow"
    assert urlparse(environment["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    lock = urlparse(settings.registry_lock_url)
    assert lock.hostname == "postgres" and lock.path == "/mlflow"


def test_airflow_settings_of_the_production_profile_are_the_ones_compose_gives_airflow(
    monkeypatch,
):
    # Given the environment of an Airflow container, with `.env` values filled in
    environment = {k: _substituted(v) for k, v in _environment(SERVICES["airflow-worker"]).items()}
    for key, value in environment.items():
        if key.startswith("MLOPS_"):
            monkeypatch.setenv(key, value)

    # When the pipeline derives Airflow's configuration from its settings
    derived = load_settings().airflow_env()

    # Then it names the same executor, metadata database, broker and result backend
    for key in (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY",
        "AIRFLOW_CONN_LAKE",
    ):
        assert derived[key] == environment[key], key


def test_workers_scale_and_share_the_state_volume():
    worker = SERVICES["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert "state:/data/state" in worker["volumes"]
    assert _environment(worker)["MLOPS_STATE_ROOT"] == "/data/state"
