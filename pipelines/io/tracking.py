"""MLflow handles: tracking and registry URIs from settings, experiments, code version."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import psutil

from pipelines.settings import Settings


def mlflow_client(settings: Settings) -> Any:
    """Point MLflow at the settings' tracking and registry URIs; return a client."""
    # The pipeline runs on closed networks: never phone home.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow import MlflowClient

    if settings.tracking_uri.startswith("sqlite:"):
        settings.mlflow_root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def experiment_id(settings: Settings, name: str) -> str:
    """The experiment's id, created on first use (artifacts under the state root when embedded)."""
    client = mlflow_client(settings)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None
    if settings.tracking_uri.startswith("sqlite:"):
        location = (settings.mlflow_root / "artifacts" / name).as_uri()
    return client.create_experiment(name, artifact_location=location)


def process_tags() -> dict[str, str]:
    """Tags naming the process an MLflow run lives in, so a later run can tell it died."""
    me = psutil.Process()
    return {
        "mlops.host": socket.gethostname(),
        "mlops.pid": str(me.pid),
        "mlops.process_started": f"{me.create_time():.3f}",
    }


def _process_alive(tags: dict[str, str]) -> bool:
    try:
        process = psutil.Process(int(tags["mlops.pid"]))
        return f"{process.create_time():.3f}" == tags["mlops.process_started"]
    except (psutil.NoSuchProcess, KeyError, ValueError):
        return False


def close_abandoned_runs(settings: Settings, experiment: str) -> list[str]:
    """Mark FAILED the runs of `experiment` still RUNNING whose process, on this host, died
    (a killed task); their ids. Runs of other hosts are left alone: no one here can tell."""
    client = mlflow_client(settings)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    closed = []
    for run in client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if tags.get("mlops.host") != socket.gethostname() or _process_alive(tags):
            continue
        client.set_tag(run.info.run_id, "mlops.closed_because", "its process died mid-run")
        client.set_terminated(run.info.run_id, "FAILED")
        closed.append(run.info.run_id)
    return closed


def code_version(root: Path) -> str | None:
    """Git commit of the code that runs, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
