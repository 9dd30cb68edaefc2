"""Every DAG parses, is documented, owned, tagged and retried, and imports nothing heavy."""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(DAGS_FOLDER.glob("*.py"))
HEAVY_MODULES = [
    "pandas",
    "pyarrow",
    "numpy",
    "feast",
    "great_expectations",
    "mlflow",
    "xgboost",
    "sklearn",
    "scipy",
    "pipelines.settings",
]
TOP_LEVEL_ALLOWED = {"__future__", "airflow", "datetime", "typing"}
# The one project module a DAG file may import at its top: standard library only.
PROJECT_MODULE_ALLOWED = "pipelines.contracts"


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_every_dag_imports_without_errors(dag_bag):
    # Given the project's DAGs folder, when Airflow parses it, then nothing fails.
    assert dag_bag.import_errors == {}
    assert "feature_pipeline" in dag_bag.dags


def test_every_dag_is_documented_tagged_owned_and_retried(dag_bag):
    for dag_id, dag in dag_bag.dags.items():
        assert dag.doc_md and len(dag.doc_md.strip()) > 50, f"{dag_id} has no doc_md"
        assert dag.tags, f"{dag_id} has no tags"
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} is never retried"
            assert task.on_failure_callback, f"{dag_id}.{task.task_id} raises no alert"


def _permanent_errors() -> list[type[Exception]]:
    from pipelines import errors

    found, todo = [], [errors.PermanentError]
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo.extend(kind.__subclasses__())
    return found


def test_every_task_fails_at_once_on_every_error_retrying_cannot_fix(dag_bag):
    # Given every error of the pipeline that the same inputs would raise again
    from pipelines.errors import NotLandedError

    permanent = _permanent_errors()
    assert len(permanent) >= 10
    for dag_id, dag in dag_bag.dags.items():
        for task in dag.tasks:
            policy = task.retry_policy
            where = f"{dag_id}.{task.task_id}"
            assert policy is not None, f"{where} has no retry policy"
            # Then each fails the task on its first try; a late partition is retried
            for kind in permanent:
                decision = policy.evaluate(kind("x"), 1, task.retries + 1)
                assert decision.action.value == "fail", f"{where} retries {kind.__name__}"
            assert policy.evaluate(NotLandedError("late"), 1, 4).action.value != "fail", where


def test_every_dag_runs_once_deployed(dag_bag):
    # A paused nightly DAG drops the asset events meant for it, and unpausing one from the
    # trigger form's default starts missed runs: every DAG is active from the start.
    for dag_id, dag in dag_bag.dags.items():
        assert dag.is_paused_upon_creation is False, dag_id


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda path: path.name)
def test_dag_files_import_only_airflow_and_the_contracts_at_top_level(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            modules = [
                f"{module}.{alias.name}" if module == "pipelines" else module
                for alias in node.names
            ]
        else:
            continue
        for module in modules:
            allowed = module.split(".")[0] in TOP_LEVEL_ALLOWED or module == PROJECT_MODULE_ALLOWED
            assert allowed, f"{path.name}:{node.lineno} imports {module}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda path: path.name)
def test_parsing_a_dag_file_loads_no_heavy_library(path):
    # Given a fresh interpreter, when it parses the DAG file, then no heavy library is loaded.
    probe = (
        "import json, runpy, sys; runpy.run_path(sys.argv[1]); "
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=DAGS_FOLDER.parent,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_feature_pipeline_wiring(dag_bag):
    dag = dag_bag.dags["feature_pipeline"]
    order = ["check_landed", "validate", "publish", "build_features"]
    for upstream, downstream in pairwise(order):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
    # Labels and the online store both follow the night's features, independently.
    assert dag.get_task("build_features").downstream_task_ids == {"build_labels", "materialize"}
    assert [asset.name for asset in dag.get_task("materialize").outlets] == ["features"]
    assert dag.catchup and dag.max_active_runs == 1
    # One partition per night: the run at midnight is keyed by the night that just ended
    timetable = dag.timetable
    assert type(timetable).__name__ == "CronPartitionTimetable"
    assert (timetable.run_offset, timetable.key_format) == (-1, "%Y-%m-%d")
    # Shared state is written by one task instance at a time, backfills included
    for task_id in ("validate", "materialize"):
        assert dag.get_task(task_id).max_active_tis_per_dag == 1
    # A night waiting for its partition waits in the triggerer, holding no worker
    assert dag.get_task("check_landed").deferrable


def _parse(path: Path, environ: dict[str, str]) -> Any:
    probe = (
        "import json, sys; from airflow.dag_processing.dagbag import DagBag; "
        "dag = next(iter(DagBag(sys.argv[1]).dags.values())); "
        "print(json.dumps([str(dag.start_date), dag.catchup, "
        "dag.get_task('check_landed').poke_interval, dag.get_task('check_landed').timeout]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_SCHEDULE")} | environ
    out = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_nightly_schedule_starts_where_the_settings_say():
    path = DAGS_FOLDER / "feature_pipeline.py"
    # Given a configured first night, the schedule catches up from it (its run is at the
    # midnight after it), with the configured landing wait
    configured = {
        "MLOPS_SCHEDULE__START_DATE": "1998-03-03",
        "MLOPS_SCHEDULE__LANDING_POKE_INTERVAL_SECONDS": "7",
        "MLOPS_SCHEDULE__LANDING_TIMEOUT_SECONDS": "70",
    }
    assert _parse(path, configured) == ["1998-03-04 00:00:00+00:00", True, 7, 70]
    # Given none, there is no start date to march from: the first run is the latest night
    assert _parse(path, {})[:2] == ["None", True]


def test_training_wiring(dag_bag):
    dag = dag_bag.dags["training"]
    assert dag.max_active_runs == 1
    assert [asset.name for asset in dag.get_task("promote").outlets] == ["model_promoted"]
    assert dag.get_task("decide").downstream_task_ids == {"approve", "promote", "reject"}
    assert dag.get_task("approve").downstream_task_ids == {"promote"}
    assert set(dag.params) == {
        "training_start",
        "training_end",
        "hyperparameters",
        "gate_overrides",
        "reason",
    }
    # Weekly, with no start date: deploying never starts a missed weekly run at once
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert "0 3 * * 0" in str(dag.timetable.expression)
    assert dag.start_date is None and not dag.catchup


def test_training_params_are_the_contracts_one_schema(dag_bag):
    from airflow.sdk.exceptions import ParamValidationError

    from pipelines import contracts

    dag = dag_bag.dags["training"]
    # Each Param's schema and default are the contract's (the CLI and the first task check
    # the same), the form adding only a title
    for name, schema in contracts.TRAINING_PARAM_SCHEMAS.items():
        param = dag.params.get_param(name)
        assert {k: v for k, v in param.schema.items() if k != "title"} == schema, name
        assert param.value == contracts.TRAINING_PARAM_DEFAULTS[name], name
    # The defaults validate; NaN, an infinity and an unknown name do not
    assert copy.deepcopy(dag.params).validate() == contracts.TRAINING_PARAM_DEFAULTS
    for value in (float("nan"), float("inf"), 1e308):
        params = copy.deepcopy(dag.params)
        with pytest.raises(ParamValidationError, match="reg_lambda"):
            params.update({"hyperparameters": {"reg_lambda": value}})
    # The request is checked first: nothing runs before the task that checks it
    assert [task.task_id for task in dag.roots] == ["build_training_set"]


def test_batch_scoring_runs_once_per_night_of_features(dag_bag):
    dag = dag_bag.dags["batch_scoring"]
    assert type(dag.timetable).__name__ == "PartitionedAssetTimetable"
    assert dag.timetable.asset_condition.name == "features"
    assert not dag.params  # the night is the run's partition key, not a form field
    assert [asset.name for asset in dag.get_task("publish").outlets] == ["predictions"]
    assert dag.get_task("shards").downstream_task_ids == {"score_shard"}
    assert dag.get_task("score_shard").downstream_task_ids == {"publish"}
    assert dag.get_task("publish").downstream_task_ids == {"shadow"}


def test_drift_monitor_runs_once_per_night_of_predictions_and_starts_training(dag_bag):
    dag = dag_bag.dags["drift_monitor"]
    assert type(dag.timetable).__name__ == "PartitionedAssetTimetable"
    assert dag.timetable.asset_condition.name == "predictions"
    assert not dag.params
    start = dag.get_task("start_training")
    assert start.trigger_dag_id == "training" and start.skip_when_already_exists
    assert dag.get_task("request_retraining").downstream_task_ids == {"start_training"}


def test_rollback_is_manual_and_decides_its_target_once(dag_bag):
    dag = dag_bag.dags["model_rollback"]
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert dag.get_task("choose_target").downstream_task_ids == {"rollback"}
