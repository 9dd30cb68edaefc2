"""Shared fixtures: every test writes below its own temporary state root."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings of a small world whose state root is this test's temporary directory.

    Set through the environment, as a DAG task or the CLI would read it.
    """
    monkeypatch.setenv("MLOPS_STATE_ROOT", str(tmp_path / "state"))
    monkeypatch.setenv("MLOPS_SYNTHETIC__CUSTOMERS", "300")
    yield load_settings()


# The longest files first: with `--dist loadfile --no-loadscope-reorder` (make test) each
# worker starts on one of them, so the run never ends with one worker alone on the soak.
LONGEST_FIRST = (
    "tests/soak/",
    "tests/e2e/test_cdnow_project.py",
    "tests/e2e/test_batch_scoring.py",
    "tests/integration/test_production_pipeline.py",
    "tests/crash/",
    "tests/e2e/test_feature_pipeline.py",
    "tests/e2e/test_training.py",
    "tests/e2e/test_text_ids.py",
    "tests/e2e/test_serving.py",
    "tests/browser/",
)


def _rank(item: pytest.Item) -> int:
    path = item.nodeid
    return next(
        (n for n, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST)
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest test files first (a stable sort keeps each file's own order)."""
    items.sort(key=_rank)


def pytest_configure(config: pytest.Config) -> None:
    """Point Airflow at a throwaway home before anything imports it."""
    home = Path(tempfile.mkdtemp(prefix="pipelines-airflow-"))
    os.environ.update(Settings(state_root=home).airflow_env())
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
