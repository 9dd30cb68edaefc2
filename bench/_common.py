"""What the benchmarks share: the project's child environment and per-process measurements.

Standard library only: `bench.drift` runs its Evidently child in a virtualenv that holds
Evidently and not the project's dependencies.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024.0, 1)


@contextmanager
def measure() -> Iterator[dict[str, float]]:
    """Time the block; record this process's peak RSS before it and after it.

    Yields the figures, filled in when the block ends: `wall_s`, `rss_before_mb`
    (interpreter, libraries and loaded inputs) and `peak_rss_mb`.
    """
    figures = {"rss_before_mb": peak_rss_mb()}
    started = time.perf_counter()
    yield figures
    figures["wall_s"] = time.perf_counter() - started
    figures["peak_rss_mb"] = peak_rss_mb()


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, default=str))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the project importable, plus `extra`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env
