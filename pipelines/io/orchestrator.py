"""A real Airflow on the project's home: its components as subprocesses, and its REST API.

The demo and the tests drive Airflow the way its users do: a scheduler, dag-processor,
API server and triggerer on the settings' executor and metadata database, reached only
through the REST API (log in, trigger with a partition key, backfill, clear, watch).
`python -m pipelines ui` (`make airflow`) runs the same components for people. Only the
API server listens, on loopback unless the settings say otherwise; everything they write
is private to their owner.

Airflow reads its configuration when it is first imported, so `use_project_airflow`
must run before anything imports `airflow` in this process.
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

from pipelines import security
from pipelines.settings import Settings

STARTUP_TIMEOUT = 300.0


# Generous: on a machine loaded well past its cores, SQLite-backed endpoints can stall.
HTTP_TIMEOUT = 120.0


HTTP_ATTEMPTS = 4


LOOPBACK = "127.0.0.1"


ADMIN = "admin"  # the user Airflow's simple auth manager has by default


# The log servers bind every interface and fixed ports: nothing here reads logs remotely
# (the API server reads task logs from the shared logs folder).
SCHEDULER = ["scheduler", "--skip-serve-logs"]


API_SERVER = ["api-server"]  # on the host and port of its environment (`LocalAirflow`)


DAG_PROCESSOR = ["dag-processor"]


TRIGGERER = ["triggerer", "--skip-serve-logs"]


LOCAL_COMPONENTS = {
    "api-server": API_SERVER,
    "dag-processor": DAG_PROCESSOR,
    "scheduler": SCHEDULER,
    "triggerer": TRIGGERER,
}


FINISHED = ("success", "failed")


class AirflowError(RuntimeError):
    """Airflow, or a run in it, did not do what was asked; the message says what it did."""


def use_project_airflow(settings: Settings) -> None:
    """Point this process (and its children) at the project's Airflow home and DAGs."""
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(settings.airflow_home):
        raise RuntimeError("airflow was imported before the project's Airflow home was set")
    os.environ.update(settings.airflow_env())
    # `airflow standalone` and the executors spawn `airflow` by name: use this interpreter's.
    bin_dir = os.path.dirname(sys.executable)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    security.private_state_root(settings.state_root)
    settings.airflow_home.mkdir(mode=security.PRIVATE_DIRECTORY_MODE, exist_ok=True)
    if str(settings.project_root) not in sys.path:
        sys.path.insert(0, str(settings.project_root))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """Poll until `probe` returns something truthy; raise naming `what` and the last error."""
    import httpx

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if result := probe():
                return result
        except (httpx.HTTPError, OSError, json.JSONDecodeError) as error:
            last_error = error
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last_error!r})")


class LocalAirflow:
    """Airflow's components as subprocesses of one process group, in a private state root:
    whatever they create is their owner's alone, and only the API server listens.

    The configuration is the settings' own (`Settings.airflow_env()`: home, DAGs, executor,
    metadata database, parallelism), the MLOPS variables its tasks see, the API server's
    address (a private port of loopback; with `on_ui_address`, the settings' UI host and
    port), fresh secrets, and `overrides`. `stop()` reports anything of it that outlived it.
    """

    def __init__(
        self,
        settings: Settings,
        mlops_env: Mapping[str, str],
        components: Mapping[str, Sequence[str]] = LOCAL_COMPONENTS,
        overrides: Mapping[str, str] | None = None,
        on_ui_address: bool = False,
    ) -> None:
        self.settings = settings
        self.home = settings.airflow_home
        if on_ui_address:
            ui = settings.airflow
            self.host, self.port, self.url = ui.ui_host, ui.ui_port, ui.ui_url
        else:
            self.host, self.port = LOOPBACK, free_port()
            self.url = f"http://{LOOPBACK}:{self.port}"
        self.components = dict(components)
        self.processes: dict[str, subprocess.Popen] = {}
        self.group: int | None = None
        self.seen: dict[int, Any] = {}
        self.env = self._environment(mlops_env) | dict(overrides or {})

    def _environment(self, mlops_env: Mapping[str, str]) -> dict[str, str]:
        # Only the settings decide Airflow's configuration and the tasks' MLOPS variables.
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
            "AIRFLOW__API__HOST": self.host,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",  # it would bind 0.0.0.0
        }
        return env

    def start(self) -> None:
        """Migrate the metadata database, then start every component."""
        security.private_state_root(self.settings.state_root)
        self.home.mkdir(mode=security.PRIVATE_DIRECTORY_MODE, exist_ok=True)
        # The admin's password, generated here: Airflow would print (and log) one it makes.
        passwords = Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        if not passwords.exists():
            with security.open_private(passwords) as file:
                file.write(json.dumps({ADMIN: secrets.token_urlsafe(16)}).encode())
        with security.open_private(self.home / "db-migrate.log") as log:
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=self.env,
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=security.PRIVATE_UMASK,
            )
        for name, args in self.components.items():
            with security.open_private(self.home / f"{name}.log") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *args],
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # One group for every component: the first one leads it.
                    process_group=self.group or 0,
                    umask=security.PRIVATE_UMASK,
                )
            self.group = self.group or process.pid
            self.processes[name] = process

    def _ours(self) -> list[Any]:
        """Every live process started for this Airflow home, wherever it was reparented.

        Task runners put themselves in process groups of their own, so the group alone
        is not enough: every process of ours carries this home in its environment.
        """
        import psutil

        found = {}
        this = psutil.Process()
        never = {this.pid, *(parent.pid for parent in this.parents())}  # whoever started us
        for process in psutil.process_iter():
            try:
                if process.pid not in never and (
                    process.environ().get("AIRFLOW_HOME") == str(self.home)
                ):
                    found[process.pid] = process
            except (psutil.Error, OSError):
                continue
        for pid, process in list(self.seen.items()):
            if pid not in found and process.is_running():
                found[pid] = process
        return [p for p in found.values() if _alive(p)]

    def check_alive(self) -> None:
        """Raise if a component exited; remember every process of ours seen so far."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AirflowError(
                    f"airflow {name} exited with {process.returncode}:\n{self.log_tail(name)}"
                )
        for process in self._ours():
            self.seen.setdefault(process.pid, process)

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The last lines of a component's log."""
        path = self.home / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_and_warn(self) -> None:
        """Stop Airflow; say which of its processes survived, if any."""
        survivors = self.stop()
        if survivors:
            print(f"warning: Airflow processes still running: {survivors}", flush=True)

    def stop(self) -> list[str]:
        """Stop every component and whatever they spawned; describe any survivor."""
        import psutil

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


def _alive(process: Any) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class AirflowApi:
    """The REST API (v2), logged in as the admin the simple auth manager generated."""

    def __init__(self, airflow: LocalAirflow) -> None:
        import httpx

        self.airflow = airflow
        self.client = httpx.Client(base_url=airflow.url, timeout=HTTP_TIMEOUT)

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

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
        """Log in through `/auth/token` and keep the bearer token."""
        username, password = self.admin()
        response = self.client.post(
            "/auth/token", json={"username": username, "password": password}
        )
        if response.status_code != 201:
            raise AirflowError(f"login as {username} failed: {response.text}")
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def call(
        self,
        method: str,
        path: str,
        done: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """One API v2 call. It is tried again when a busy server times out, drops the
        connection or answers 5xx (SQLite locked by another component for a while): reads
        and updates always, a creation when `done` can tell whether an attempt that seemed
        to fail went through (it returns that result, or None)."""
        import httpx

        again = method in ("GET", "PATCH") or done is not None
        attempts = HTTP_ATTEMPTS if again else 1
        for attempt in range(1, attempts + 1):
            if attempt > 1 and done is not None and (result := done()) is not None:
                return result
            try:
                response = self.client.request(method, f"/api/v2{path}", **kwargs)
            except httpx.TransportError:
                if attempt == attempts:
                    raise
                time.sleep(attempt)
                continue
            if response.status_code < 500 or attempt == attempts:
                break
            time.sleep(attempt)
        if response.status_code >= 400:
            raise AirflowError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    # Runs and tasks.
    def runs(self, dag_id: str, **query: Any) -> list[dict[str, Any]]:
        """Every run of a DAG, oldest first."""
        params = {"limit": 1000, "order_by": "id"} | query
        return self.call("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One run of a DAG."""
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.call("GET", path, params={"limit": 1000})["task_instances"]

    def tasks(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """State of each task of a run (mapped ones as `task[index]`)."""
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
            for ti in self.task_instances(dag_id, run_id)
        }

    def upstream_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The asset events that started a run."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents"
        return self.call("GET", path)["asset_events"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task's log, as the UI shows it."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        content = self.call("GET", path, params={"full_content": True})["content"]
        if isinstance(content, list):
            lines = (json.dumps(line) if isinstance(line, dict) else line for line in content)
            return "\n".join(lines)
        return str(content)

    # Actions.
    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG, as the UI's toggle does."""
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(
        self, dag_id: str, partition_key: str | None = None, conf: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Trigger a run by hand, as the UI's trigger form does (no logical date); its id
        names its night."""
        run_id = f"manual__{partition_key or 'run'}__{secrets.token_hex(4)}"
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}, "dag_run_id": run_id}
        if partition_key is not None:
            body["partition_key"] = partition_key

        def created() -> dict[str, Any] | None:
            runs = self.runs(dag_id, run_id_pattern=run_id)
            return runs[0] if runs else None

        return self.call("POST", f"/dags/{dag_id}/dagRuns", done=created, json=body)

    def backfill(
        self, dag_id: str, first: str, last: str, reprocess: str | None = None
    ) -> dict[str, Any]:
        """`airflow backfill create` through the API: nights `first`..`last` (YYYY-MM-DD);
        `reprocess` ("failed" or "completed") also reruns nights that ran already."""
        body: dict[str, Any] = {
            "dag_id": dag_id,
            "from_date": f"{first}T00:00:00Z",
            "to_date": f"{last}T00:00:00Z",
        }
        if reprocess is not None:
            body["reprocess_behavior"] = reprocess

        def created() -> dict[str, Any] | None:
            backfills = self.call("GET", "/backfills", params={"dag_id": dag_id})["backfills"]
            mine = [
                b
                for b in backfills
                if not b["completed_at"]
                and b["from_date"][:10] == first
                and b["to_date"][:10] == last
            ]
            return mine[-1] if mine else None

        return self.call("POST", "/backfills", done=created, json=body)

    def wait_for_backfill(self, backfill_id: int, timeout: float) -> dict[str, Any]:
        """Wait until a backfill has completed (every run it made has ended)."""

        def completed() -> dict[str, Any] | None:
            self.airflow.check_alive()
            backfill = self.call("GET", f"/backfills/{backfill_id}")
            return backfill if backfill["completed_at"] else None

        return wait_for(f"backfill {backfill_id} to complete", completed, timeout, every=3)

    def clear_tasks(self, dag_id: str, run_id: str, task_ids: list[str]) -> Any:
        """Clear tasks of one run, those alone, as the UI's *Clear* does."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": task_ids,
            "include_downstream": False,
            "include_upstream": False,
            "only_failed": False,
            "reset_dag_runs": True,
        }

        def states() -> dict[tuple[str, int], tuple[str | None, int]]:
            return {
                (ti["task_id"], ti["map_index"]): (ti["state"], ti["try_number"])
                for ti in self.task_instances(dag_id, run_id)
                if ti["task_id"] in task_ids
            }

        before = states()

        def cleared() -> dict[str, Any] | None:
            return {"cleared": True} if states() != before else None

        return self.call("POST", f"/dags/{dag_id}/clearTaskInstances", done=cleared, json=body)

    # Waiting.
    def wait_until_parsed(self, dag_ids: Sequence[str]) -> None:
        """Wait for the dag-processor to have parsed these DAGs; raise on any import error."""

        def parsed() -> bool:
            self.airflow.check_alive()
            dags = {d["dag_id"] for d in self.call("GET", "/dags", params={"limit": 100})["dags"]}
            return set(dag_ids) <= dags

        wait_for("the DAGs to be parsed", parsed, STARTUP_TIMEOUT, every=2)
        errors = self.call("GET", "/importErrors")
        if errors["total_entries"]:
            raise AirflowError(f"DAG import errors: {errors['import_errors']}")

    def wait_for_run(
        self,
        dag_id: str,
        find: Callable[[list[dict[str, Any]]], dict[str, Any] | None],
        timeout: float,
        what: str = "",
    ) -> dict[str, Any]:
        """Wait until the run `find` picks among a DAG's runs exists and has finished."""

        def finished() -> dict[str, Any] | None:
            self.airflow.check_alive()
            run = find(self.runs(dag_id))
            return run if run and run["state"] in FINISHED else None

        return wait_for(what or f"a {dag_id} run to finish", finished, timeout, every=2)
