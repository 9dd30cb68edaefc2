"""The libraries Airflow's task processes use, imported once by the executor's fork server.

`Settings.airflow_env` has the scheduler start its LocalExecutor workers from a
`forkserver` that imports this module first (`[scheduler] mp_start_method` and
`mp_forkserver_preload`). Each worker is forked from that server, and the task SDK's
supervisor `os.fork()`s each task process from a worker: a task starts with Feast, Great
Expectations, MLflow, scikit-learn and XGBoost imported instead of importing them itself.

Third-party code only: the project's own modules stay imported by each task, so a task
runs the code on disk, not the code of when the scheduler started. Import only, too:
nothing here may start a thread, open a connection or compute (an OpenMP pool started
before a fork can hang the child). The fork server ignores an ImportError here in
silence, so `tests/unit/io/test_preload.py` imports this module.
"""

from __future__ import annotations

import gc
import importlib
import os

MODULES = (
    # The task process's main, what it loads, and the operators the DAG files use.
    "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.dagbag",
    "airflow.sdk.bases.decorator",
    "airflow.sdk.definitions.decorators.condition",
    "airflow.sdk.definitions.decorators.setup_teardown",
    "airflow.providers.standard.operators.trigger_dagrun",
    "airflow.providers.standard.sensors.external_task",
    "airflow.providers.standard.sensors.filesystem",
    "numpy",
    "pandas",
    "pyarrow.compute",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "yaml",
    "feast",
    # What `io.feast_store.repo_config_dict` has Feast load by name.
    "feast.infra.compute_engines.local.compute",
    "feast.infra.offline_stores.dask",
    "feast.infra.online_stores.sqlite",
    "feast.infra.passthrough_provider",
    "feast.infra.registry.registry",
    "great_expectations",
    "mlflow",
    "mlflow.pyfunc",
    "mlflow.sklearn",
    # What MLflow loads for sqlite tracking and registry stores and an sklearn model.
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.tracing.processor.base_mlflow",
    "skops.io",
    "git",
    "matplotlib.pyplot",
    "scipy.spatial.distance",
    "scipy.stats",
    "sklearn.calibration",
    "sklearn.compose",
    "sklearn.metrics",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "xgboost",
)

# MLflow starts a telemetry thread at import unless told not to (`Settings.airflow_env`
# says so too); the stages draw with Agg, never a GUI backend.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
# Feast's import makes a /tmp/feast_metrics_* folder that only an exiting owner removes,
# and the fork server is killed with Airflow's process group: keep it in Airflow's home.
if "PROMETHEUS_MULTIPROCESS_DIR" not in os.environ and "AIRFLOW_HOME" in os.environ:
    metrics = os.path.join(os.environ["AIRFLOW_HOME"], "feast-metrics")
    os.makedirs(metrics, mode=0o700, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROCESS_DIR"] = metrics
for name in MODULES:
    importlib.import_module(name)
# Out of the collector's sight: a forked child's collections then never write to (and so
# copy) the pages of these objects, which live as long as the process anyway.
gc.freeze()
