"""Airflow's LocalExecutor, with the pipeline's libraries imported before its workers fork.

Every task runs in a process forked from an executor worker (a bare `os.fork` on Linux),
and the workers are forked from the scheduler when the executor starts. A task that
imports Feast, Great Expectations, MLflow or XGBoost itself spends seconds of CPU on
that before a few hundred milliseconds of work; imported once in the scheduler, they
are in every task already. Importing them starts no thread and opens no connection, so
forking after them is as safe as Airflow's own fork.
"""

from __future__ import annotations

import importlib

from airflow.executors.local_executor import LocalExecutor

# What tasks import: the libraries the stage modules import lazily, then the stage modules.
TASK_MODULES = (
    "great_expectations",
    "feast",
    "feast.infra.online_stores.sqlite",
    "feast.infra.offline_stores.dask",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "skops.io",
    "xgboost",
    "sklearn.compose",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "matplotlib.pyplot",
    "pipelines.ingest.validation",
    "pipelines.ingest.publish",
    "pipelines.io.feast_store",
    "pipelines.features.materialization",
    "pipelines.features.labelling",
    "pipelines.training.registration",
    "pipelines.registry.alias_moves",
    "pipelines.registry.evaluation",
    "pipelines.registry.infracheck",
    "pipelines.scoring.publishing",
    "pipelines.scoring.shadowing",
    "pipelines.monitoring.nightly",
    "pipelines.monitoring.reporting",
    "pipelines.monitoring.retraining",
    "pipelines.jobs.feature_pipeline",
    "pipelines.jobs.batch_scoring",
    "pipelines.jobs.drift_monitor",
    "pipelines.jobs.training",
    "pipelines.jobs.model_rollback",
)


def preload() -> None:
    """Import every module a task imports."""
    for name in TASK_MODULES:
        importlib.import_module(name)


class PreloadedLocalExecutor(LocalExecutor):
    """The LocalExecutor, its workers forked with the tasks' modules imported."""

    def start(self) -> None:
        preload()
        super().start()
