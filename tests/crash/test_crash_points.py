"""A real `kill -9` at named points of every stage; the rerun ends where a clean run ends.

Each trial copies one prepared world, runs a step in a child process that sends itself
SIGKILL at a named crash point (`Settings.crash_point`), runs the step again (as an
Airflow retry would), and compares with the same step run once without a crash: the
published bytes, the online store's rows, the aliases and the audit trail. Two more
trials kill by polling for a state: a training run mid-way, and the task that waits on
the infra check's child process.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipelines import contracts
from pipelines.demo import synthetic
from pipelines.demo.worlds import labelled_frame, land_validated
from pipelines.io import feast_store, tracking
from pipelines.registry import alias_moves, journal, model_versions
from pipelines.scoring import publishing
from pipelines.settings import PROJECT_ROOT, Settings, load_settings
from pipelines.training import registration
from tests.crash import steps

WORLD_ENV = {
    "MLOPS_SYNTHETIC__CUSTOMERS": "300",
    "MLOPS_TRAINING__MIN_ROWS": "10",
    "MLOPS_SCORING__SHARD_ROWS": "100",  # three shards
    "MLOPS_FEAST__ONLINE_WRITE_BATCH_ROWS": "100",  # three online write batches
}
KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A world every trial copies: 8 validated days, the next night landed raw, a champion
    (v1), a rejected version (v2) and a challenger (v3), and a saved training set."""
    root = tmp_path_factory.mktemp("crash") / "template"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**WORLD_ENV, "MLOPS_STATE_ROOT": str(root)}.items():
            patch.setenv(name, value)
        settings = load_settings()
        for offset in range(8):
            land_validated(settings, steps.DAY - timedelta(days=offset))
        synthetic.land_day(settings, steps.NIGHT)
        feast_store.apply_repo(settings)
        frame = labelled_frame(settings, steps.DAY)
        frame.to_parquet(root / steps.TRAINING_SET, index=False)
        versions = [
            registration.train_and_register(settings, frame, {"n_estimators": n}).version
            for n in (20, 10, 15)
        ]
        assert versions == [steps.CHAMPION, steps.REJECTED, steps.CANDIDATE]
        alias_moves.promote(settings, steps.CHAMPION, None, "first champion", "test")
        alias_moves.reject(settings, steps.CANDIDATE, "a challenger to shadow", "test")
    yield root


def _world(template: Path, target: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A private copy of the template, selected by the environment (as tasks read it)."""
    shutil.copytree(template, target)
    for name, value in {**WORLD_ENV, "MLOPS_STATE_ROOT": str(target)}.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def _child(step: str, crash_point: str = "") -> subprocess.Popen[str]:
    """The step in a child process, as a task runs it (killing itself at `crash_point`)."""
    env = {**os.environ, "MLOPS_CRASH_POINT": crash_point}
    code = f"from tests.crash import steps; steps.run({step!r})"
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _crash(step: str, point: str) -> None:
    child = _child(step, point)
    output, _ = child.communicate(timeout=600)
    assert child.returncode == KILLED, f"{step} did not die at {point}:\n{output[-3000:]}"


# What a user compares after a night: per stage, the state a rerun must reproduce.
def _file_bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _validated(settings: Settings) -> Any:
    path = settings.validated_root / "activity" / f"date={steps.NIGHT}" / "part-0.parquet"
    staging = settings.lake_root / "staging"
    return _file_bytes(path), sorted(p.name for p in staging.rglob("*") if p.is_file())


def _online_rows(settings: Settings) -> list[tuple[Any, ...]]:
    """Every online row but its write time (`created_ts`, which only says when)."""
    with sqlite3.connect(settings.feast_root / "online_store.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = []
        for table in tables:
            query = f'SELECT entity_key, feature_name, value, event_ts FROM "{table}"'
            rows += [(table, *row) for row in db.execute(query)]
    return sorted(rows)


def _predictions(settings: Settings, dataset: str = publishing.PREDICTIONS) -> Any:
    staged = settings.lake_root / "staging" / dataset
    leftovers = sorted(p.name for p in staged.rglob("*") if p.is_file()) if staged.exists() else []
    return _file_bytes(publishing.partition(settings, dataset, steps.DAY)), leftovers


def _registry(settings: Settings) -> Any:
    aliases = {
        alias: model_versions.alias_version(settings, alias)
        for alias in (
            contracts.CHAMPION,
            contracts.PREVIOUS_CHAMPION,
            contracts.CHALLENGER,
        )
    }
    trail = [
        (m.action, m.alias, m.from_version, m.to_version, m.reason, m.actor, m.source, m.state)
        for m in journal.history(settings)
    ]
    return aliases, trail


def _champion_scored(settings: Settings) -> None:
    steps.scoring()


def _v3_promoted(settings: Settings) -> None:
    alias_moves.promote(settings, steps.CANDIDATE, steps.CHAMPION, "retrained", "test")


# (step, crash point, what to prepare in the copy first, the state to compare)
Trial = tuple[str, str, Callable[[Settings], None] | None, Callable[[Settings], Any]]
TRIALS: list[Trial] = [
    ("ingest", "ingest.staged", None, _validated),
    ("ingest", "ingest.publishing", None, _validated),
    ("materialize", "materialize.batch_written", None, _online_rows),
    ("materialize", "materialize.written", None, _online_rows),
    ("scoring", "scoring.planned", None, _predictions),
    ("scoring", "scoring.shard_written", None, _predictions),
    ("scoring", "scoring.joined", None, _predictions),
    ("scoring", "scoring.renamed", None, _predictions),
    (
        "shadow",
        "scoring.shard_written",
        _champion_scored,
        lambda s: _predictions(s, "predictions_shadow"),
    ),
    (
        "shadow",
        "scoring.renamed",
        _champion_scored,
        lambda s: _predictions(s, "predictions_shadow"),
    ),
    ("promote", "registry.intent_recorded", None, _registry),
    ("promote", "registry.moved.previous_champion", None, _registry),
    ("promote", "registry.moved.champion", None, _registry),
    ("promote", "registry.moved.challenger", None, _registry),
    ("reject", "registry.intent_recorded", None, _registry),
    ("reject", "registry.moved.challenger", None, _registry),
    ("rollback", "registry.intent_recorded", _v3_promoted, _registry),
    ("rollback", "registry.moved.champion", _v3_promoted, _registry),
    ("rollback", "registry.moved.previous_champion", _v3_promoted, _registry),
]


@pytest.fixture(scope="module")
def clean_runs(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each step's state after one run without a crash (in its own copy of the world)."""
    outcomes = {}
    for step, _, prepare, observe in {t[0]: t for t in TRIALS}.values():
        with pytest.MonkeyPatch.context() as patch:
            settings = _world(template, tmp_path_factory.mktemp("clean") / step, patch)
            if prepare:
                prepare(settings)
            returned = steps.run(step)
            outcomes[step] = (observe(settings), returned)
    return outcomes


@pytest.mark.parametrize(
    ("step", "point", "prepare", "observe"), TRIALS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_kill_at_a_crash_point_then_a_rerun_ends_as_a_clean_run(
    template, clean_runs, tmp_path, monkeypatch, step, point, prepare, observe
):
    # Given a copy of the world, prepared as the step expects
    settings = _world(template, tmp_path / "world", monkeypatch)
    if prepare:
        prepare(settings)

    # When the step is killed (SIGKILL) at the crash point, then run again
    _crash(step, point)
    returned = steps.run(step)

    # Then the state is exactly a clean run's, and the rerun reports what a clean run
    # reports (a promotion's moves: what `model_promoted` is emitted with)
    clean_state, clean_returned = clean_runs[step]
    assert observe(settings) == clean_state
    if step in ("promote", "reject", "rollback"):
        assert _moves(returned) == _moves(clean_returned)
    if step == "shadow":
        assert returned["status"] == clean_returned["status"] == "scored"


def _moves(returned: Any) -> list[tuple[Any, ...]]:
    entries = returned if isinstance(returned, list) else [returned]
    return [(m["alias"], m["from_version"], m["to_version"], m["source"]) for m in entries]


def _wait(condition: Callable[[], Any], what: str, seconds: float = 300) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def test_a_killed_training_run_is_closed_as_failed_by_the_next_one(template, tmp_path, monkeypatch):
    # Given a training task killed while its MLflow run is open
    settings = _world(template, tmp_path / "world", monkeypatch)
    client = tracking.mlflow_client(settings)
    experiment = client.get_experiment_by_name(settings.project.model.name).experiment_id
    child = _child("train")

    def running() -> list[Any]:
        return client.search_runs([experiment], "attributes.status = 'RUNNING'")

    (abandoned,) = _wait(running, "the training run to start")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert client.get_run(abandoned.info.run_id).info.status == "RUNNING"

    # When training runs again
    steps.train()

    # Then the killed run is closed as failed, saying why, and no run is left open
    closed = client.get_run(abandoned.info.run_id)
    assert closed.info.status == "FAILED"
    assert closed.data.tags["mlops.closed_because"] == "its process died mid-run"
    assert running() == []


def test_a_killed_infra_check_leaves_no_orphan_process(template, tmp_path, monkeypatch):
    # Given the task waiting on the infra check's fresh process
    _world(template, tmp_path / "world", monkeypatch)
    child = _child("infra_check")
    task = psutil.Process(child.pid)

    def checker() -> list[psutil.Process]:
        return [p for p in task.children() if "infra-check" in " ".join(p.cmdline())]

    (fresh,) = _wait(checker, "the infra check's process")

    # When the task is killed
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)

    # Then its child dies with it, and the check passes when the task runs again
    _wait(
        lambda: not fresh.is_running() or fresh.status() == psutil.STATUS_ZOMBIE,
        "the orphan to die",
        60,
    )
    assert steps.infra_check()["passed"]
