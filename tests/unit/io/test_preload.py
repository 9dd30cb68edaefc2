"""The fork server's preload: it must import (the fork server ignores an ImportError in
silence), start no thread a fork would copy half-way, and leave the project's own code
to each task."""

from __future__ import annotations

import subprocess
import sys

from pipelines.settings import PROJECT_ROOT, Settings

CHECK = """
import sys, threading
import pipelines.io.preload as preload
missing = [name for name in preload.MODULES if name not in sys.modules]
assert not missing, missing
ours = sorted(name for name in sys.modules if name.startswith("pipelines."))
assert ours == ["pipelines.io", "pipelines.io.preload"], ours
assert threading.active_count() == 1, threading.enumerate()
"""


def test_the_preload_imports_its_libraries_and_nothing_of_ours_and_starts_no_thread(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path), "PYTHONPATH": str(PROJECT_ROOT)}
    subprocess.run([sys.executable, "-c", CHECK], env=env, check=True, timeout=300)


def test_only_the_schedulers_executor_uses_the_preloading_fork_server(settings):
    env = settings.airflow_env()

    assert env["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    assert env["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"] == "pipelines.io.preload"
    assert not any(name.startswith("AIRFLOW__CORE__MP_") for name in env)


def test_the_preload_can_be_turned_off(tmp_path):
    env = Settings(state_root=tmp_path, airflow={"preload_task_libraries": False}).airflow_env()

    assert "AIRFLOW__SCHEDULER__MP_START_METHOD" not in env
