"""The infra check: the registered candidate loaded and scored in a fresh process."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.contracts import InfraCheck
from pipelines.io import tracking
from pipelines.registry.model_versions import score
from pipelines.settings import Settings

_PR_SET_PDEATHSIG = 1  # prctl(2)


def infra_check(
    settings: Settings, version: str, sample: pd.DataFrame, workdir: Path
) -> InfraCheck:
    """Load the version from the registry in a fresh process and score `sample` there."""
    workdir.mkdir(parents=True, exist_ok=True)
    sample_path = workdir / f"infra-check-sample-v{version}.parquet"
    sample.to_parquet(sample_path, index=False)
    command = [sys.executable, "-m", "pipelines", "infra-check", version, str(sample_path)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
        check=False,
        preexec_fn=_dies_with(os.getpid()),
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return InfraCheck(False, 0, 0.0, "model did not load or score: " + " | ".join(tail))
    result = InfraCheck(**json.loads(done.stdout.strip().splitlines()[-1]))
    client = tracking.mlflow_client(settings)
    name = settings.project.model.name
    client.set_model_version_tag(name, version, "infra_check.passed", str(result.passed).lower())
    client.set_model_version_tag(name, version, "infra_check.detail", result.detail)
    return result


def _dies_with(parent: int) -> Callable[[], None] | None:
    """A child-process hook that has Linux kill the child when `parent` dies (even by
    SIGKILL, which runs no clean-up), so a killed task leaves no orphan behind."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def score_sample_here(settings: Settings, version: str, sample_path: Path) -> InfraCheck:
    """The body of the infra check, run inside the fresh process."""
    import mlflow

    tracking.mlflow_client(settings)
    uri = f"models:/{settings.project.model.name}/{version}"
    local = Path(mlflow.artifacts.download_artifacts(uri))
    megabytes = sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) / 2**20
    sample = pd.read_parquet(sample_path)
    scores = score(settings, version, sample)
    valid = np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0)
    problems = []
    if len(scores) != len(sample):
        problems.append(f"{len(scores)} scores for {len(sample)} rows")
    if not valid.all():
        problems.append(f"{int((~valid).sum())} of {len(scores)} scores are not probabilities")
    if megabytes > settings.gate.max_model_megabytes:
        problems.append(
            f"model is {megabytes:.2f} MB, over the {settings.gate.max_model_megabytes} MB budget"
        )
    detail = "; ".join(problems) or f"scored {len(sample)} rows with valid probabilities"
    return InfraCheck(not problems, len(scores), round(megabytes, 3), detail)
