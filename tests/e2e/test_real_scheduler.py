"""The DAGs chain through their assets in a real Airflow, not only under `dag.test()`.

Airflow's scheduler, dag-processor, API server and triggerer run as subprocesses on a
throwaway home (LocalExecutor, SQLite); the test drives them only through the REST API,
as a person would: log in, unpause, trigger one night of `feature_pipeline`, then watch
`features` → `batch_scoring` → `predictions` → `drift_monitor` → `retrain_request` →
`training` happen on their own.
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
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import jobs, lake, score, synthetic, tracking
from pipelines.settings import Settings, load_settings

pytestmark = pytest.mark.e2e

LAST_HISTORY_DAY = date(2026, 2, 14)
DRIFT_DAY = date(2026, 2, 15)
HISTORY_DAYS = 45
DRIFT_ENV = {
    "MLOPS_SYNTHETIC__DRIFT_START": DRIFT_DAY.isoformat(),
    "MLOPS_SYNTHETIC__DRIFT_FEATURES": '["usage_minutes", "sessions"]',
    "MLOPS_SYNTHETIC__DRIFT_MAGNITUDE": "1.5",
}
CHAIN = ("feature_pipeline", "batch_scoring", "drift_monitor", "training")
CHAIN_TIMEOUT = 600.0
STARTUP_TIMEOUT = 180.0
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1"],
    # The log servers bind every interface and fixed ports: nothing here reads logs remotely.
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
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


@pytest.fixture(scope="module")
def drifted_world(tmp_path_factory):
    """45 validated days of 500 customers with their labels, a promoted champion, the
    Feast repo applied, and the next day's raw partition landed with covariate drift."""
    state_root = tmp_path_factory.mktemp("real-scheduler") / "state"
    mlops_env = {"MLOPS_STATE_ROOT": str(state_root), "MLOPS_SYNTHETIC__CUSTOMERS": "500"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in mlops_env.items():
            patch.setenv(name, value)
        settings = load_settings()
        for offset in range(HISTORY_DAYS):
            day = settings.synthetic.start_date + timedelta(days=offset)
            synthetic.land_day(settings, day)  # raw activity and the labels due that day
            frame = synthetic.activity(settings.synthetic, day)
            lake.write_table_atomic(
                pa.Table.from_pandas(frame, schema=synthetic.ACTIVITY_SCHEMA, preserve_index=False),
                lake.partition_file(settings.validated_root, settings.dataset.raw_dataset, day),
            )
        assert day == LAST_HISTORY_DAY
        # Builds the training set through Feast (applying the repo), trains, gates, promotes.
        outcome = jobs.train_and_gate(LAST_HISTORY_DAY, None, None, None, "champion", "test")
        assert outcome["gate"]["passed"], outcome["gate"]

        for name, value in DRIFT_ENV.items():
            patch.setenv(name, value)
        drifted = load_settings()
        synthetic.land_day(drifted, DRIFT_DAY)
        raw = pq.read_table(
            lake.partition_file(drifted.raw_root, drifted.dataset.raw_dataset, DRIFT_DAY)
        ).to_pandas()
        quiet = synthetic.activity(settings.synthetic, DRIFT_DAY)
        # The drift is real, and still inside the gate's ranges (a day has 1440 minutes).
        assert raw["usage_minutes"].mean() > 1.5 * quiet["usage_minutes"].mean()
        assert raw["sessions"].mean() > 1.5 * quiet["sessions"].mean()
        assert raw["usage_minutes"].between(0, 1440).all()
        assert raw["sessions"].between(0, 500).all()
        yield drifted, mlops_env | DRIFT_ENV


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Airflow:
    """Airflow's components as subprocesses of one process group, on a private home and port."""

    def __init__(self, settings: Settings, mlops_env: dict[str, str]) -> None:
        self.settings = settings
        self.home = settings.airflow_home
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.group: int | None = None
        self.seen: dict[int, psutil.Process] = {}
        self.env = self._environment(mlops_env)

    def _environment(self, mlops_env: dict[str, str]) -> dict[str, str]:
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
            # Paused until their schedules are up to date (see below), then unpaused by the API.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
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
        for name, args in COMPONENTS.items():
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

    def login(self) -> None:
        def healthy() -> bool:
            self.airflow.check_alive()
            return self.client.get("/api/v2/monitor/health").status_code == 200

        _wait_for("the API server", healthy, STARTUP_TIMEOUT)
        passwords = Path(self.airflow.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        users = _wait_for(
            f"the generated password in {passwords}",
            lambda: passwords.exists() and json.loads(passwords.read_text()),
            STARTUP_TIMEOUT,
        )
        username, password = next(iter(users.items()))
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

    def tasks(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        found = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
            for ti in found["task_instances"]
        }

    def upstream_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents"
        return self.call("GET", path)["asset_events"]


@pytest.fixture
def running_airflow(drifted_world) -> Iterator[tuple[Airflow, Api]]:
    settings, mlops_env = drifted_world
    airflow = Airflow(settings, mlops_env)
    api = Api(airflow)
    try:
        airflow.start()
        api.login()
        yield airflow, api
    finally:
        api.client.close()
        airflow.stop()


def _last_scheduled_runs(now: datetime) -> dict[str, datetime]:
    """Logical date of the latest scheduled run each time-scheduled DAG has due by `now`."""
    last_night = _midnight(now.date()) - timedelta(days=1)  # feature_pipeline: daily interval
    sunday = _midnight(now.date()) + timedelta(hours=3)  # training: Sundays at 03:00
    while sunday.weekday() != 6 or sunday > now:
        sunday -= timedelta(days=1)
    return {"feature_pipeline": last_night, "training": sunday}


def _bring_schedules_up_to_date(api: Api) -> None:
    """Mark the latest scheduled run of each time-scheduled DAG as done before unpausing.

    This Airflow is new, so unpausing would start scheduled runs that have nothing to do
    with the night under test: `feature_pipeline` catches up from 2026-01-01 (a run per
    night, one at a time, ahead of the manual run), and `training` runs last Sunday's
    missed weekly run at once (an active training run rightly suppresses the drift
    monitor's retrain request). A deployed pipeline has had those runs already: record
    each with a one-run backfill, cancelled while the DAG is still paused so it never
    starts, and wait for the dag-processor to schedule the next run after now.
    """
    now = datetime.now(UTC)
    for dag_id, logical_date in _last_scheduled_runs(now).items():
        backfill = api.call(
            "POST",
            "/backfills",
            json={
                "dag_id": dag_id,
                "from_date": _iso(logical_date),
                "to_date": _iso(logical_date),
                "max_active_runs": 1,
            },
        )
        api.call("PUT", f"/backfills/{backfill['id']}/cancel")
        runs = api.runs(dag_id)
        assert [(r["run_type"], r["state"]) for r in runs] == [("backfill", "failed")], runs

    def next_runs_after_now() -> bool:
        dags = [api.call("GET", f"/dags/{dag_id}") for dag_id in _last_scheduled_runs(now)]
        return all(
            d["next_dagrun_run_after"]
            and datetime.fromisoformat(d["next_dagrun_run_after"]) > datetime.now(UTC)
            for d in dags
        )

    _wait_for("the next scheduled runs to move past now", next_runs_after_now, 120)


def _watch_chain(airflow: Airflow, api: Api, feature_run: str) -> dict[str, dict[str, Any]]:
    """Follow the chain until `training` ends; fail fast on a failed run, or on timeout."""
    deadline = time.monotonic() + CHAIN_TIMEOUT
    seen: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        airflow.check_alive()
        seen = {dag_id: api.runs(dag_id) for dag_id in CHAIN}
        chosen = {
            "feature_pipeline": [
                r for r in seen["feature_pipeline"] if r["dag_run_id"] == feature_run
            ]
        }
        for dag_id in CHAIN[1:]:
            chosen[dag_id] = [r for r in seen[dag_id] if r["run_type"] == "asset_triggered"]
        failed = [r for runs in chosen.values() for r in runs if r["state"] == "failed"]
        if failed:
            pytest.fail(_describe(api, airflow, seen, failed))
        for run in chosen["drift_monitor"]:
            tasks = api.tasks("drift_monitor", run["dag_run_id"])
            if run["state"] == "success" and tasks.get("request_retraining") != "success":
                pytest.fail(f"no retrain request\n{_describe(api, airflow, seen, [run])}")
        if all(runs and runs[0]["state"] == "success" for runs in chosen.values()):
            return {dag_id: runs[0] for dag_id, runs in chosen.items()}
        time.sleep(3)
    pytest.fail(f"timed out after {CHAIN_TIMEOUT:.0f}s\n{_describe(api, airflow, seen, [])}")


def _describe(
    api: Api, airflow: Airflow, seen: dict[str, list[dict[str, Any]]], failed: list[dict]
) -> str:
    lines = []
    for dag_id, runs in seen.items():
        for run in runs:
            tasks = api.tasks(dag_id, run["dag_run_id"])
            lines.append(f"{dag_id} {run['dag_run_id']} {run['run_type']} {run['state']}: {tasks}")
        if not runs:
            lines.append(f"{dag_id}: no runs")
    for run in failed:
        task_logs = (
            airflow.home / "logs" / f"dag_id={run['dag_id']}" / f"run_id={run['dag_run_id']}"
        )
        for log in sorted(task_logs.glob("task_id=*/**/*.log")):
            text = log.read_text(errors="replace").splitlines()[-25:]
            lines += [f"--- {log.relative_to(airflow.home)}", *text]
    lines += ["--- scheduler", airflow.log_tail("scheduler", 20)]
    return "\n".join(lines)


def test_the_dags_chain_through_assets_in_a_real_scheduler(drifted_world, running_airflow):
    settings, _ = drifted_world
    airflow, api = running_airflow

    # Given the project's DAGs parsed by the dag-processor, without import errors
    def parsed() -> bool:
        airflow.check_alive()
        dags = {d["dag_id"] for d in api.call("GET", "/dags")["dags"]}
        return set(CHAIN) <= dags

    _wait_for("the DAGs to be parsed", parsed, STARTUP_TIMEOUT, every=2)
    errors = api.call("GET", "/importErrors")
    assert errors["total_entries"] == 0, errors["import_errors"]
    _bring_schedules_up_to_date(api)
    for dag_id in CHAIN:
        assert api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})["is_paused"] is False

    # When the drifted night is triggered by hand: a run at T processes the day before T
    triggered = api.call(
        "POST",
        "/dags/feature_pipeline/dagRuns",
        json={"logical_date": _iso(_midnight(DRIFT_DAY + timedelta(days=1))), "conf": {}},
    )
    assert triggered["data_interval_start"].startswith(DRIFT_DAY.isoformat()), triggered

    # Then the assets carry it all the way to a retraining, with no other trigger
    runs = _watch_chain(airflow, api, triggered["dag_run_id"])

    features = api.upstream_events("batch_scoring", runs["batch_scoring"]["dag_run_id"])
    assert [(e["source_dag_id"], e["source_run_id"]) for e in features] == [
        ("feature_pipeline", triggered["dag_run_id"])
    ]
    assert features[0]["extra"]["date"] == DRIFT_DAY.isoformat()
    predictions = api.upstream_events("drift_monitor", runs["drift_monitor"]["dag_run_id"])
    assert [(e["source_dag_id"], e["extra"]["date"]) for e in predictions] == [
        ("batch_scoring", DRIFT_DAY.isoformat())
    ]
    monitor_tasks = api.tasks("drift_monitor", runs["drift_monitor"]["dag_run_id"])
    assert monitor_tasks["request_retraining"] == "success", monitor_tasks
    (request,) = api.upstream_events("training", runs["training"]["dag_run_id"])
    assert request["source_dag_id"] == "drift_monitor"
    assert request["source_run_id"] == runs["drift_monitor"]["dag_run_id"]
    assert {"usage_minutes", "sessions"} <= set(request["extra"]["drifted_features"])

    scored = pq.read_table(score.partition(settings, score.PREDICTIONS, DRIFT_DAY)).to_pandas()
    assert len(scored) == settings.synthetic.customers
    assert set(scored["model_version"]) == {"1"}

    client = tracking.mlflow_client(settings)
    experiment = client.get_experiment_by_name(settings.training.model_name)
    training_run = runs["training"]["dag_run_id"]
    (mlflow_run,) = client.search_runs(
        [experiment.experiment_id], f"tags.`airflow.run_id` = '{training_run}'"
    )
    assert f"drift on {DRIFT_DAY.isoformat()}" in mlflow_run.data.tags["reason"]

    # And nothing of this Airflow outlives it
    assert airflow.stop() == []
