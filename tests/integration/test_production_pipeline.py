"""The production profile end to end on real services.

MLflow runs as a tracking server on a Postgres backend (as in `docker-compose.yml`), Feast
keeps its registry in Postgres and its online values in Redis, and Airflow runs on a
Postgres metadata database with the CeleryExecutor, a Celery worker taking the tasks from
Redis. The same generated world is also trained and scored on the embedded profile, and
the two must agree.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines import contracts
from pipelines.demo.worlds import land_validated_history
from pipelines.io import feast_store, lake, tracking
from pipelines.io.orchestrator import (
    API_SERVER,
    DAG_PROCESSOR,
    SCHEDULER,
    AirflowApi,
    LocalAirflow,
    free_port,
    wait_for,
)
from pipelines.jobs import training
from pipelines.registry import journal, locks
from pipelines.scoring import publishing, sharding
from pipelines.settings import Settings, load_settings
from tests.airflow_runs import NO_SCHEDULE, RUN_TIMEOUT
from tests.integration.conftest import (
    database_url,
    delete_redis_keys,
    redis_keys_matching,
    temporary_database,
    unique_name,
)

pytestmark = pytest.mark.integration

HISTORY_DAYS = 45
CUSTOMERS = 500
SHARD_ROWS = 200  # 500 customers: three mapped shards
SCORED_DAY = date(2026, 2, 14)
# Lineage columns name the MLflow run, which differs between the two backends.
COMPARED_COLUMNS = [
    "customer_id",
    "churn_probability",
    "churn_predicted",
    "model_name",
    "model_version",
    "feature_timestamp",
]


@dataclass(frozen=True)
class World:
    """A state root with history and labels, a champion trained, gated and promoted."""

    settings: Settings
    env: dict[str, str]
    training: dict


def build_world(environment: dict[str, str]) -> World:
    """Land the history and run the training job under `environment`."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        settings = load_settings()
        assert land_validated_history(settings, HISTORY_DAYS) == SCORED_DAY
        outcome = training.train_and_gate(SCORED_DAY, None, None, None, "first champion", "test")
    return World(settings, environment, outcome)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path) -> Iterator[str]:
    """An MLflow tracking server on `backend_uri`, proxying artifacts; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = artifacts.parent / "mlflow-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "mlflow", "server"),
                *("--backend-store-uri", backend_uri),
                *("--artifacts-destination", str(artifacts)),
                *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited:\n{log_path.read_text()[-3000:]}")
            return httpx.get(f"{url}/health", timeout=5).status_code == 200

        wait_for("the MLflow server", healthy, 120)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def embedded_world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("embedded") / "state"
    return build_world(
        {
            "MLOPS_STATE_ROOT": str(root),
            "MLOPS_SYNTHETIC__CUSTOMERS": str(CUSTOMERS),
            "MLOPS_SCORING__SHARD_ROWS": str(SHARD_ROWS),
        }
    )


@pytest.fixture(scope="module")
def production_world(postgres, redis_server, tmp_path_factory) -> Iterator[World]:
    """The world on Postgres and Redis: MLflow server, Feast SQL registry and Redis store."""
    base = tmp_path_factory.mktemp("production")
    feast_project = unique_name("feast")
    redis_host = redis_server.removeprefix("redis://").split("/")[0]
    with (
        temporary_database(postgres, "mlflow") as mlflow_db,
        temporary_database(postgres, "feast") as feast_db,
        temporary_database(postgres, "airflow") as airflow_db,
        mlflow_server(database_url(postgres, mlflow_db, "psycopg2"), base / "artifacts") as url,
    ):
        environment = {
            "MLOPS_PROFILE": "production",
            **NO_SCHEDULE,  # the test scores one night by hand
            "MLOPS_STATE_ROOT": str(base / "state"),
            "MLOPS_SYNTHETIC__CUSTOMERS": str(CUSTOMERS),
            "MLOPS_SCORING__SHARD_ROWS": str(SHARD_ROWS),
            "MLOPS_MLFLOW__TRACKING_URI": url,
            "MLOPS_MLFLOW__REGISTRY_URI": url,
            "MLOPS_MLFLOW__LOCK_URL": database_url(postgres, mlflow_db),
            "MLOPS_FEAST__PROJECT": feast_project,
            "MLOPS_FEAST__REDIS_CONNECTION": redis_host,
            "MLOPS_FEAST__REGISTRY_SQL_URL": database_url(postgres, feast_db, "psycopg"),
            "MLOPS_AIRFLOW__METADATA_URL": database_url(postgres, airflow_db, "psycopg2"),
            "MLOPS_AIRFLOW__CELERY_BROKER_URL": redis_server,
            "MLOPS_AIRFLOW__CELERY_RESULT_BACKEND": "db+"
            + database_url(postgres, airflow_db, "psycopg2"),
        }
        world = build_world(environment)
        try:
            yield world
        finally:
            feast_store.feature_store(world.settings).teardown()
            assert redis_keys_matching(redis_server, f"*{feast_project}".encode()) == []


def test_mlflow_on_postgres_trains_registers_gates_promotes_and_loads_by_alias(
    production_world, postgres
):
    settings, outcome = production_world.settings, production_world.training
    # The tracking server writes to Postgres and proxies artifacts to its own store
    assert settings.tracking_uri.startswith("http://")
    version = outcome["candidate"]["version"]
    assert outcome["gate"]["passed"] and outcome["infra_check"]["passed"], outcome
    client = tracking.mlflow_client(settings)
    name = settings.project.model.name
    assert client.get_model_version_by_alias(name, contracts.CHAMPION).version == version
    assert [move.to_version for move in journal.history(settings)] == [version]
    run = client.get_run(client.get_model_version(name, version).run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    assert run.data.tags["reason"] == "first champion"

    # Loaded by alias, the champion scores the features it was trained on
    import mlflow

    model = mlflow.sklearn.load_model(f"models:/{name}@{contracts.CHAMPION}")
    frame = pq.read_table(
        lake.partition_file(settings.validated_root, settings.project.source.dataset, SCORED_DAY)
    ).to_pandas()
    inputs = frame[list(model.feature_names_in_)]
    probabilities = model.predict_proba(inputs)[:, 1]
    assert len(probabilities) == CUSTOMERS and ((probabilities > 0) & (probabilities < 1)).all()


def test_alias_moves_take_a_postgres_advisory_lock_across_sessions(production_world):
    import psycopg2

    settings = production_world.settings
    key = locks.advisory_lock_key(f"mlflow-registry:{settings.project.model.name}")
    other_host = psycopg2.connect(settings.registry_lock_url)
    other_host.autocommit = True

    def try_lock() -> bool:
        with other_host.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            taken = cursor.fetchone()[0]
            if taken:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return taken

    try:
        # While one process moves an alias, no other session can
        with locks.registry_lock(settings):
            assert not try_lock()
            waiter_done = threading.Event()

            def wait_for_the_lock() -> None:
                with locks.registry_lock(settings):
                    waiter_done.set()

            thread = threading.Thread(target=wait_for_the_lock, daemon=True)
            thread.start()
            assert not waiter_done.wait(1.0), "a second lock holder got in"
        # And the waiter gets it once released
        assert waiter_done.wait(30)
    finally:
        other_host.close()


@pytest.fixture
def celery_airflow(
    production_world, redis_server
) -> Iterator[tuple[LocalAirflow, AirflowApi, str]]:
    """Airflow on the Postgres metadata DB: API server, scheduler, dag-processor and one
    Celery worker (concurrency 2) on a queue and Redis key prefix of this test's own."""
    queue = unique_name("queue")
    key_prefix = f"{queue}:"
    worker = ["celery", "worker", "--concurrency", "2", "--queues", queue, "--skip-serve-logs"]
    airflow = LocalAirflow(
        production_world.settings,
        production_world.env,
        components={
            "api-server": API_SERVER,
            "scheduler": SCHEDULER,
            "dag-processor": DAG_PROCESSOR,
            "celery-worker": worker,
        },
        overrides={
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": key_prefix,
        },
    )
    api = AirflowApi(airflow)
    try:
        airflow.start()
        api.login()
        yield airflow, api, queue
    finally:
        api.close()
        survivors = airflow.stop()
        delete_redis_keys(redis_server, f"{key_prefix}*".encode())
        assert survivors == []


def test_celery_workers_run_the_mapped_shards_and_score_as_the_embedded_profile(
    production_world, embedded_world, celery_airflow
):
    airflow, api, queue = celery_airflow
    settings = production_world.settings
    assert airflow.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert airflow.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")

    # Given the DAGs parsed by the dag-processor into the Postgres metadata DB
    api.wait_until_parsed(["batch_scoring"])
    api.call("PATCH", "/dags/batch_scoring", json={"is_paused": False})

    # When a night is scored by hand, keyed by its night
    run = api.trigger("batch_scoring", contracts.partition_key(SCORED_DAY))
    finished = api.wait_for_run(
        "batch_scoring",
        lambda runs: next((r for r in runs if r["dag_run_id"] == run["dag_run_id"]), None),
        RUN_TIMEOUT,
    )
    assert finished["state"] == "success", api.tasks("batch_scoring", run["dag_run_id"])

    # Then every task, the three mapped shards included, ran on the Celery worker
    instances = api.task_instances("batch_scoring", run["dag_run_id"])
    shards = [ti for ti in instances if ti["task_id"] == "score_shard"]
    assert sorted(ti["map_index"] for ti in shards) == [0, 1, 2]
    for ti in instances:
        assert ti["state"] in ("success", "skipped"), ti
        if ti["state"] == "success":
            assert ti["queue"] == queue and ti["executor"] in (None, "CeleryExecutor"), ti
    executed = [
        line
        for line in airflow.log_tail("celery-worker", 100_000).splitlines()
        if "Executing workload in Celery" in line and "task_id='score_shard'" in line
    ]
    for map_index in (0, 1, 2):
        assert any(f"map_index={map_index}," in line for line in executed), executed

    # And the predictions equal the embedded profile's, row for row
    produced = pd.read_parquet(publishing.partition(settings, publishing.PREDICTIONS, SCORED_DAY))
    embedded = embedded_world.settings
    scoring = sharding.plan(embedded, SCORED_DAY)
    for shard in scoring.shards:
        publishing.score_shard(embedded, scoring, shard)
    publishing.publish(embedded, scoring)
    expected = pd.read_parquet(publishing.partition(embedded, publishing.PREDICTIONS, SCORED_DAY))
    assert len(produced) == CUSTOMERS
    pd.testing.assert_frame_equal(produced[COMPARED_COLUMNS], expected[COMPARED_COLUMNS])
