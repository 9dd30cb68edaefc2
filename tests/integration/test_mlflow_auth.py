"""MLflow behind authentication, as the compose stack runs it.

A real `mlflow server --app-name basic-auth` with the stack's own auth configuration
(`deploy/mlflow-auth.ini`), its admin password and backend store taken from the
environment, as in `docker-compose.yml`. Without credentials nobody moves `champion`;
the pipeline's client, given MLflow's credential variables, does.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipelines.io import tracking
from pipelines.io.orchestrator import free_port, wait_for
from pipelines.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
AUTH_CONFIG = ROOT / "deploy" / "mlflow-auth.ini"
ADMIN = "admin"  # `admin_username` of the auth configuration
MODEL = "churn"
STARTUP_TIMEOUT = 300.0
HTTP_TIMEOUT = 60.0


@dataclass(frozen=True)
class AuthServer:
    """A running MLflow server with basic auth: its URL and its admin's password."""

    url: str
    admin_password: str


def _log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """`mlflow server --app-name basic-auth` on a free loopback port, SQLite behind it."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    admin_password = secrets.token_urlsafe(24)
    env = {name: value for name, value in os.environ.items() if not name.startswith("MLFLOW_")}
    env |= {
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MLFLOW_AUTH_CONFIG_PATH": str(AUTH_CONFIG),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--app-name",
        "basic-auth",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        # The working directory holds the auth configuration's user store (`basic_auth.db`).
        server = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def healthy() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"mlflow server exited:\n{_log_tail(log_path)}")
        return httpx.get(f"{url}/health", timeout=HTTP_TIMEOUT).status_code == 200

    try:
        wait_for("the MLflow server", healthy, STARTUP_TIMEOUT)
        yield AuthServer(url, admin_password)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


@pytest.fixture
def on_server(
    settings: Settings, mlflow_server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The pipeline's settings pointed at the server."""
    monkeypatch.setenv("MLOPS_MLFLOW__TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLOPS_MLFLOW__REGISTRY_URI", mlflow_server.url)
    return load_settings()


def _log_in(monkeypatch: pytest.MonkeyPatch, username: str, password: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


def _set_alias(url: str, version: str, auth: tuple[str, str] | None) -> httpx.Response:
    """The REST call that moves `champion`, as anyone on the network could send it."""
    return httpx.post(
        f"{url}/api/2.0/mlflow/registered-models/alias",
        json={"name": MODEL, "alias": "champion", "version": version},
        auth=auth,
        timeout=HTTP_TIMEOUT,
    )


def test_only_authenticated_clients_move_the_champion(
    on_server: Settings, mlflow_server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException

    # Given a registered version, made by the pipeline's client with the admin's credentials
    _log_in(monkeypatch, ADMIN, mlflow_server.admin_password)
    client = tracking.mlflow_client(on_server)
    client.create_registered_model(MODEL)
    run = client.create_run(tracking.experiment_id(on_server, "auth-check"))
    version = client.create_model_version(
        MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    ).version

    # When someone calls the REST API without credentials, or with a wrong password
    anonymous = _set_alias(mlflow_server.url, version, auth=None)
    guessed = _set_alias(mlflow_server.url, version, auth=(ADMIN, "not-the-password"))

    # Then both are refused and the alias has not moved
    assert (anonymous.status_code, guessed.status_code) == (401, 401)
    assert "champion" not in client.get_registered_model(MODEL).aliases

    # And the pipeline's client without credentials is refused too
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(MlflowException, match="401"):
        tracking.mlflow_client(on_server).set_registered_model_alias(MODEL, "champion", version)

    # While with the credentials in its environment it moves the alias
    _log_in(monkeypatch, ADMIN, mlflow_server.admin_password)
    authenticated = tracking.mlflow_client(on_server)
    authenticated.set_registered_model_alias(MODEL, "champion", version)
    assert authenticated.get_model_version_by_alias(MODEL, "champion").version == version
