"""Whole DAGs through Airflow's `dag.test()` on the throwaway metadata database."""

from __future__ import annotations

import pytest

from pipelines import orchestrator
from pipelines.settings import load_settings


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata database, migrated once per test session."""
    orchestrator.migrate_metadata_db()


@pytest.fixture(scope="session")
def feature_dag(airflow_db):
    """The `feature_pipeline` DAG as the scheduler would parse it."""
    return orchestrator.load_dag(load_settings(), "feature_pipeline")
