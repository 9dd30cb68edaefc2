"""A real Airflow for tests: its components as subprocesses, and its REST API logged in.

Shared by the tests that need Airflow itself rather than `dag.test()`: the real-scheduler
chain (LocalExecutor on SQLite), the CeleryExecutor run on Postgres and Redis, and the UI
in a browser. Each Airflow gets a private home, port, secrets and process group, and
`stop()` reports anything of it that outlived it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from pipelines.settings import Settings

STARTUP_TIMEOUT = 180.0
# The log servers bind every interface and fixed ports: nothing here reads logs remotely.
SCHEDULER = ["scheduler", "--skip-serve-logs"]
API_SERVER = ["api-server", "--host", "127.0.0.1"]
DAG_PROCESSOR = ["dag-processor"]
TRIGGERER = ["triggerer", "--skip-serve-logs"]
LOCAL_COMPONENTS = {
    "api-server": API_SERVER,
    "scheduler": SCHEDULER,
    "dag-processor": DAG_PROCESSOR,
    "triggerer": TRIGGERER,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """Poll until `probe` returns something truthy; fail naming `what` and the last error."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if result := probe():
                return result
        except (httpx.HTTPError, OSError, ValueError, KeyError) as error:
            last_error = error
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})")


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Airflow:
    """Airflow's components as subprocesses of one process group, on a private home and port.

    The configuration is the settings' own (`Settings.airflow_env()`, so the profile picks
    the executor and metadata database), plus a private port and secrets, and `overrides`.
    """

    def __init__(
        self,
        settings: Settings,
        mlops_env: Mapping[str, str],
        components: Mapping[str, Sequence[str]] = LOCAL_COMPONENTS,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.home = settings.airflow_home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.components = dict(components)
        self.processes: dict[str, subprocess.Popen] = {}
        self.group: int | None = None
        self.seen: dict[int, psutil.Process] = {}
        self.env = self._environment(mlops_env) | dict(overrides or {})

    def _environment(self, mlops_env: Mapping[str, str]) -> dict[str, str]:
        # The test process points at pytest's throwaway Airflow home: drop all of that.
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AIRFLOW", "MLOPS_", "_AIRFLOW"))
        }
        env |= mlops_env
        env |= self.settings.airflow_env()
        bin_dir = str(Path(sys.executable).parent)  # executors spawn `airflow` by name
        env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH", "")) if p)
        env |= {
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",  # it would bind 0.0.0.0
        }
        return env

    # Processes.
    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "db-migrate.log").open("wb") as log:
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=self.env,
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for name, args in self.components.items():
            with (self.home / f"{name}.log").open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *args],
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # One group for every component: the first one leads it.
                    process_group=self.group or 0,
                )
            self.group = self.group or process.pid
            self.processes[name] = process

    def _ours(self) -> list[psutil.Process]:
        """Every live process started for this Airflow home, wherever it was reparented.

        Task runners put themselves in process groups of their own, so the group alone
        is not enough: every process of ours carries this home in its environment.
        """
        found = {}
        for process in psutil.process_iter():
            try:
                if process.environ().get("AIRFLOW_HOME") == str(self.home):
                    found[process.pid] = process
            except (psutil.Error, OSError):
                continue
        for pid, process in list(self.seen.items()):
            if pid not in found and process.is_running():
                found[pid] = process
        return [p for p in found.values() if _alive(p)]

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                pytest.fail(
                    f"airflow {name} exited with {process.returncode}:\n{self.log_tail(name)}"
                )
        for process in self._ours():
            self.seen.setdefault(process.pid, process)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.home / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> list[str]:
        """Stop every component and whatever they spawned; describe any survivor."""
        if self.group is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.group, signal.SIGTERM)
            deadline = time.monotonic() + 30
            for process in self.processes.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.group, signal.SIGKILL)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        leftovers = self._ours()
        for process in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(process.pid), signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(leftovers, timeout=10)
        survivors = []
        for process in self._ours():
            with contextlib.suppress(psutil.Error):
                survivors.append(f"{process.pid} {' '.join(process.cmdline())}")
        return survivors


class Api:
    """The REST API, logged in as the admin the simple auth manager generated."""

    def __init__(self, airflow: Airflow) -> None:
        self.airflow = airflow
        self.client = httpx.Client(base_url=airflow.url, timeout=30.0)

    def admin(self) -> tuple[str, str]:
        """Username and password of the admin, once the API server is up and wrote them."""

        def healthy() -> bool:
            self.airflow.check_alive()
            return self.client.get("/api/v2/monitor/health").status_code == 200

        wait_for("the API server", healthy, STARTUP_TIMEOUT)
        passwords = Path(self.airflow.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        users = wait_for(
            f"the generated password in {passwords}",
            lambda: passwords.exists() and json.loads(passwords.read_text()),
            STARTUP_TIMEOUT,
        )
        return next(iter(users.items()))

    def login(self) -> None:
        username, password = self.admin()
        response = self.client.post(
            "/auth/token", json={"username": username, "password": password}
        )
        assert response.status_code == 201, response.text
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        assert self.client.get("/api/v2/dags").status_code == 200

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, f"/api/v2{path}", **kwargs)
        if response.status_code >= 400:
            pytest.fail(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.call("GET", path, params={"limit": 100})["task_instances"]

    def tasks(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
            for ti in self.task_instances(dag_id, run_id)
        }

    def upstream_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents"
        return self.call("GET", path)["asset_events"]

    def wait_until_parsed(self, dag_ids: Sequence[str]) -> None:
        """Wait for the dag-processor to have parsed these DAGs; fail on any import error."""

        def parsed() -> bool:
            self.airflow.check_alive()
            dags = {d["dag_id"] for d in self.call("GET", "/dags", params={"limit": 100})["dags"]}
            return set(dag_ids) <= dags

        wait_for("the DAGs to be parsed", parsed, STARTUP_TIMEOUT, every=2)
        errors = self.call("GET", "/importErrors")
        assert errors["total_entries"] == 0, errors["import_errors"]
