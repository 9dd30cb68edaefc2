"""Whole DAG runs in this process, through Airflow's `dag.test()`.

For the DAGs a night's partition key does not drive (`training`, `model_rollback`):
`dag.test()` cannot give a run a partition key, so the nightly DAGs are tested on a
real scheduler instead (`pipelines.orchestrator.LocalAirflow`).
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
    tasks: dict[str, str]


def migrate_metadata_db() -> None:
    """Create or upgrade the metadata database of this process's Airflow (idempotent)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )


def load_dag(settings: Settings, dag_id: str) -> Any:
    """Parse one DAG afresh; import errors are raised, not hidden."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.dags_folder / f"{dag_id}.py"))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag.dags[dag_id]


def run_dag(dag: Any, logical_date: datetime, conf: dict[str, Any] | None = None) -> DagRunOutcome:
    """Run a DAG once with Airflow's `dag.test()` and report how it ended.

    In-process task runs write a run's `conf` into the DAG's Param objects, so
    run a freshly loaded DAG (`load_dag`) whenever the params matter.
    """
    run = dag.test(logical_date=logical_date, run_conf=conf)
    return DagRunOutcome(
        dag_id=run.dag_id,
        run_id=run.run_id,
        state=str(run.state.value if hasattr(run.state, "value") else run.state),
        tasks={
            ti.task_id: str(ti.state.value if hasattr(ti.state, "value") else ti.state)
            for ti in run.get_task_instances()
        },
    )
