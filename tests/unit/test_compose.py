"""`docker-compose.yml` is checked here, since no Docker engine runs the tests; the shell
scripts its services run with secrets are run here too, on stand-ins for their images."""

from __future__ import annotations

import configparser
import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from pipelines.io import feast_store
from pipelines.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
EXPOSE = yaml.safe_load((ROOT / "docker-compose.expose.yml").read_text())["services"]
# `${VAR}` is filled by compose from .env; `$${VAR}` is left to the container's shell.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}")
# Any interpolation by compose: `${VAR...}` or `$VAR` (but not `$$VAR`, the shell's).
INTERPOLATED = re.compile(r"(?<!\$)\$(?:\{([A-Za-z0-9_]+)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")
SECRET = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN")
ONE_SHOT = {"airflow-init"}
INTERNAL = ("postgres", "redis", "mlflow")
AIRFLOW_SERVICES = sorted(name for name in SERVICES if name.startswith("airflow-"))
IMAGE_PROJECT_ROOT = "/opt/project"  # the Dockerfile's WORKDIR, where it copies deploy/


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
    for variable in (
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SECRET_KEY",
        "AIRFLOW_ADMIN_PASSWORD",
        "AIRFLOW_FERNET_KEY",
        "AIRFLOW_JWT_SECRET",
        "SERVING_TOKEN",
    ):
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


def _settings_of_service(name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the pipeline loads in a service's container (its MLOPS variables)."""
    for key, value in _environment(SERVICES[name]).items():
        if key.startswith("MLOPS_"):
            monkeypatch.setenv(key, _substituted(value))
    return load_settings()


def test_production_settings_point_at_the_compose_services(monkeypatch):
    # Given the environment a worker container gets, when the pipeline loads its settings
    environment = _environment(SERVICES["airflow-worker"])
    settings = _settings_of_service("airflow-worker", monkeypatch)
    config = feast_store.repo_config_dict(settings)

    # Then every service it talks to is a service of the stack, on the port it serves
    assert settings.profile == "production"
    tracking = urlparse(settings.tracking_uri)
    assert tracking.hostname == "mlflow" and "5000" in SERVICES["mlflow"]["command"]
    redis_address = config["online_store"]["connection_string"].split(",")[0]
    assert redis_address == "redis:6379"  # Redis's own port: its command sets no other
    registry = urlparse(config["registry"]["path"])
    assert registry.hostname == "postgres" and registry.port == 5432
    assert registry.path == "/feast"
    databases = (ROOT / "deploy" / "postgres-init.sql").read_text()
    for database in ("airflow", "mlflow", "feast"):
        assert f"CREATE DATABASE {database};" in databases
    airflow_db = urlparse(_substituted(environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
    assert airflow_db.hostname == "postgres" and airflow_db.path == "/airflow"
    assert urlparse(_substituted(environment["AIRFLOW__CELERY__BROKER_URL"])).hostname == "redis"
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


def _commands(service: dict) -> list[str]:
    """What a service runs: its command, entrypoint and healthcheck, word by word."""
    words: list[str] = []
    for part in (service.get("command"), service.get("entrypoint"), service.get("healthcheck")):
        if isinstance(part, dict):
            part = part.get("test")
        words += [part] if isinstance(part, str) else [str(word) for word in part or []]
    return words


def _shell_script(service: dict) -> str:
    """The `sh -c` script of a service, as its shell gets it (compose turns `$$` into `$`)."""
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = service["command"]
    return script.replace("$$", "$")


def _stand_ins(folder: Path, scripts: dict[str, str]) -> dict[str, str]:
    """An environment whose PATH finds these scripts first, standing in for an image's."""
    folder.mkdir()
    for name, text in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{text}\n")
        (folder / name).chmod(0o755)
    path = os.pathsep.join([str(folder), str(Path(sys.executable).parent), os.environ["PATH"]])
    return {"PATH": path}


@pytest.mark.parametrize("name", INTERNAL)
def test_postgres_redis_and_mlflow_answer_on_the_stack_network_only(name):
    assert "ports" not in SERVICES[name], f"{name} is published on the host's interfaces"


def test_the_expose_override_publishes_them_on_loopback_only():
    assert set(EXPOSE) == set(INTERNAL)
    for name, override in EXPOSE.items():
        assert set(override) == {"ports"}, f"{name}: the override changes more than ports"
        for mapping in override["ports"]:
            address, host_port, container_port = mapping.split(":")
            assert address == "127.0.0.1" and host_port == container_port, (name, mapping)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_command_line_holds_a_secret(name):
    # `ps` shows every process's arguments to every user: secrets reach a service through
    # its environment, never through its command, entrypoint or healthcheck
    for word in _commands(SERVICES[name]):
        for match in INTERPOLATED.finditer(word):
            variable = match.group(1) or match.group(2)
            assert not SECRET.search(variable), f"{name} puts {variable} on a command line"
        assert "://" not in word or "@" not in word, f"{name}: credentials in a URL: {word}"


def test_redis_requires_a_password_and_every_client_gives_it():
    # Redis is configured with the password
    redis = SERVICES["redis"]
    environment = _environment(redis)
    assert VARIABLE.fullmatch(environment["REDIS_PASSWORD"]).group(1) == "REDIS_PASSWORD"
    assert "requirepass $$REDIS_PASSWORD" in redis["command"][0]
    # its healthcheck authenticates (redis-cli reads REDISCLI_AUTH), and only a PONG is healthy
    assert VARIABLE.fullmatch(environment["REDISCLI_AUTH"]).group(1) == "REDIS_PASSWORD"
    assert "grep -q PONG" in " ".join(_commands(redis))
    # and every client of it, in every service, gives the password
    clients = 0
    for name, service in SERVICES.items():
        for key, value in _environment(service).items():
            if "redis:6379" not in value:
                continue
            clients += 1
            filled = _substituted(value)
            if "://" in filled:
                assert urlparse(filled).password == "<redis_password>", f"{name}: {key}"
            else:  # Feast's `host:port,password=...`
                assert "password=<redis_password>" in filled.split(","), f"{name}: {key}"
    assert clients >= 3  # Airflow's broker, the pipeline's broker setting, Feast


def test_redis_gets_its_password_on_standard_input_not_as_an_argument(tmp_path):
    # Given the image's entrypoint replaced by one that records what it was given
    given = tmp_path / "given"
    env = _stand_ins(
        tmp_path / "bin",
        {"docker-entrypoint.sh": f'echo "$@" > {given}.args; cat > {given}.stdin'},
    )
    script = _shell_script(SERVICES["redis"])

    # When the service starts with a password
    started = subprocess.run(
        ["/bin/sh", "-c", script], env=env | {"REDIS_PASSWORD": "s3cret_Pass-word"}, timeout=30
    )

    # Then redis-server reads it from its standard input (the trailing `-`), not from an argument
    assert started.returncode == 0
    arguments = (tmp_path / "given.args").read_text().split()
    assert arguments[0] == "redis-server" and arguments[-1] == "-"
    assert "s3cret_Pass-word" not in arguments
    assert (tmp_path / "given.stdin").read_text() == "requirepass s3cret_Pass-word\n"

    # And a password that URLs would need escaped, or none, stops it
    for password in ("", "pass word", "p@ss:word", 'quo"te'):
        refused = subprocess.run(
            ["/bin/sh", "-c", script],
            env=env | {"REDIS_PASSWORD": password},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert refused.returncode == 1 and "REDIS_PASSWORD" in refused.stderr, password


def test_the_admin_password_is_written_as_escaped_json_for_its_owner_only(tmp_path):
    # Given a password with every character JSON must escape, and an earlier file others read
    password = "we\"ird\\pa$s 'word' é\n"
    passwords = tmp_path / "passwords.json"
    passwords.write_text("{}")
    passwords.chmod(0o644)
    env = _stand_ins(tmp_path / "bin", {"airflow": "exit 0"})  # `airflow db migrate`
    init = SERVICES["airflow-init"]
    assert _environment(init)["AIRFLOW_ADMIN_PASSWORD"].startswith("${AIRFLOW_ADMIN_PASSWORD:?")

    # When airflow-init runs
    written = subprocess.run(
        ["/bin/sh", "-c", _shell_script(init)],
        env=env
        | {
            "AIRFLOW_ADMIN_PASSWORD": password,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then the file is JSON naming that very password, and only its owner can read it
    assert written.returncode == 0, written.stderr
    assert json.loads(passwords.read_text()) == {"admin": password}
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    assert "json.dumps" in init["command"][0] and "printf" not in init["command"][0]
    assert _environment(init)["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith(
        "/opt/airflow/"  # the `airflow-home` volume
    )


def test_mlflow_requires_authentication_and_airflow_logs_in():
    # Given MLflow's service and the auth configuration it is pointed at
    mlflow = SERVICES["mlflow"]
    environment = _environment(mlflow)
    config_path = environment["MLFLOW_AUTH_CONFIG_PATH"]
    assert config_path.startswith(f"{IMAGE_PROJECT_ROOT}/deploy/")
    assert "COPY deploy/ deploy/" in (ROOT / "Dockerfile").read_text()
    config = configparser.ConfigParser()
    config.read(ROOT / config_path.removeprefix(f"{IMAGE_PROJECT_ROOT}/"))
    auth = config["mlflow"]

    # Then it serves the basic-auth app, its admin's password and form secret from .env
    command = mlflow["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert VARIABLE.fullmatch(environment["MLFLOW_AUTH_ADMIN_PASSWORD"]).group(1) == (
        "MLFLOW_ADMIN_PASSWORD"
    )
    assert VARIABLE.fullmatch(environment["MLFLOW_FLASK_SERVER_SECRET_KEY"])
    assert "admin_password" not in auth  # never in a file
    assert auth["default_permission"] == "NO_PERMISSIONS"
    # its backend store comes from the environment, not from its command line
    assert urlparse(_substituted(environment["MLFLOW_BACKEND_STORE_URI"])).path == "/mlflow"
    assert "--backend-store-uri" not in command
    # its user store is a file in its working directory, on a volume of its own
    assert auth["database_uri"] == "sqlite:///basic_auth.db"
    assert f"mlflow-auth:{mlflow['working_dir']}" in mlflow["volumes"]
    # and it accepts requests addressed to the name the workers use
    tracking = urlparse(_environment(SERVICES["airflow-worker"])["MLOPS_MLFLOW__TRACKING_URI"])
    assert tracking.netloc in environment["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")

    # And every Airflow service logs in to it as that admin, with that password
    for name in AIRFLOW_SERVICES:
        airflow = _environment(SERVICES[name])
        assert airflow["MLFLOW_TRACKING_USERNAME"] == auth["admin_username"], name
        assert VARIABLE.fullmatch(airflow["MLFLOW_TRACKING_PASSWORD"]).group(1) == (
            "MLFLOW_ADMIN_PASSWORD"
        ), name


def test_the_serving_service_needs_its_token_and_follows_the_production_stack(monkeypatch):
    settings = _settings_of_service("serving", monkeypatch)

    assert settings.profile == "production" and settings.serving.host == "0.0.0.0"
    assert settings.serving.token == "<serving_token>"
    assert urlparse(settings.registry_uri).hostname == "mlflow"
    assert feast_store.repo_config_dict(settings)["online_store"]["type"] == "redis"
    assert SERVICES["serving"]["healthcheck"]["test"][-1].endswith("/readyz")
