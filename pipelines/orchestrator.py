"""Run the project's DAGs through Airflow on the embedded (SQLite) metadata database.

Airflow reads its configuration when it is first imported, so `use_project_airflow`
must run before anything imports `airflow` in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipelines.settings import Settings


@dataclass(frozen=True)
class DagRunOutcome:
    """Final state of one DAG run and of each of its tasks."""

    dag_id: str
    run_id: str
    state: str
    data_interval_start: str | None
    tasks: dict[str, str]

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


def use_project_airflow(settings: Settings, log_level: str | None = None) -> None:
    """Point this process (and its children) at the project's Airflow home and DAGs."""
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(settings.airflow_home):
        raise RuntimeError("airflow was imported before the project's Airflow home was set")
    os.environ.update(settings.airflow_env())
    # `airflow standalone` and the executors spawn `airflow` by name: use this interpreter's.
    bin_dir = os.path.dirname(sys.executable)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    if log_level:
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = log_level
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    if str(settings.project_root) not in sys.path:
        sys.path.insert(0, str(settings.project_root))


def migrate_metadata_db() -> None:
    """Create or upgrade Airflow's metadata database (idempotent)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )


def load_dag(settings: Settings, dag_id: str) -> Any:
    """Parse one DAG afresh; import errors are raised, not hidden."""
    from airflow.dag_processing.dagbag import DagBag

    # By convention a DAG lives in `dags/<dag_id>.py`: parse only that file when it exists.
    single = settings.dags_folder / f"{dag_id}.py"
    bag = DagBag(dag_folder=str(single if single.exists() else settings.dags_folder))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    if dag_id not in bag.dags:
        raise KeyError(f"no DAG {dag_id!r} in {settings.dags_folder}; found {sorted(bag.dags)}")
    return bag.dags[dag_id]


def run_dag(dag: Any, logical_date: datetime, conf: dict[str, Any] | None = None) -> DagRunOutcome:
    """Run a DAG once with Airflow's `dag.test()` and report how it ended.

    In-process task runs write a run's `conf` into the DAG's Param objects, so
    run a freshly loaded DAG (`load_dag`) whenever the params matter.
    """
    run = dag.test(logical_date=logical_date, run_conf=conf)
    interval_start = run.data_interval_start
    return DagRunOutcome(
        dag_id=run.dag_id,
        run_id=run.run_id,
        state=str(run.state.value if hasattr(run.state, "value") else run.state),
        data_interval_start=interval_start.isoformat() if interval_start else None,
        tasks={
            ti.task_id: str(ti.state.value if hasattr(ti.state, "value") else ti.state)
            for ti in run.get_task_instances()
        },
    )
