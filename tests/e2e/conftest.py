"""Worlds the end-to-end tests share, and DAGs run in this process through `dag.test()`."""

from __future__ import annotations

import pytest

from pipelines.demo.worlds import land_validated_history
from pipelines.settings import load_settings
from tests.dag_runs import load_dag, migrate_metadata_db


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata database (of this process), migrated once per test session."""
    migrate_metadata_db()


@pytest.fixture(scope="module")
def labelled_world(tmp_path_factory):
    """A state root with 45 validated days of 500 customers, so 15 days carry labels.

    Partitions go straight into the validated zone: these tests are about training
    and scoring, and the gate has its own tests.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_STATE_ROOT", str(tmp_path_factory.mktemp("world") / "state"))
        patch.setenv("MLOPS_SYNTHETIC__CUSTOMERS", "500")
        settings = load_settings()
        land_validated_history(settings, 45)
        yield patch, settings


@pytest.fixture(scope="session")
def training_dag(airflow_db):
    """The `training` DAG as the scheduler would parse it."""
    return load_dag(load_settings(), "training")


@pytest.fixture(scope="session")
def rollback_dag(airflow_db):
    """The `model_rollback` DAG as the scheduler would parse it."""
    return load_dag(load_settings(), "model_rollback")
