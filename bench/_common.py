"""What the benchmarks share: one child-process harness, per-process measurements, targets.

Every bench runs each measured path as a *role* in a fresh interpreter (``python -m
bench.<name> --role <role> --result-file <file> ...``), so peak RSS is per path:

* the parent calls `run_child`, which starts the role with an environment (`child_env`,
  or `embedded_env` for the project's embedded profile), logs its output to
  ``<workdir>/<tag>.log``, polls its memory in ``/proc`` (optionally stopping it at an RSS
  cap or a timeout), and returns the JSON the child wrote, or raises `ChildFailed` with the
  tail of the log (or, with ``tolerate_failure``, returns ``{"status": ...}``);
* the child parses ``--role`` / ``--result-file`` (`add_role_arguments`), measures with
  `measure` / `peak_rss_mb` (its own ``ru_maxrss``) and writes its result with `write_json`.

Then every bench states its targets in one shape, `Target` (name, measured value, bound,
met), printed one line each by `print_targets` and put in the last-line JSON under
``targets`` by `targets_json`.

Standard library only: `bench.drift` runs its Evidently child in a virtualenv that holds
Evidently and not the project's dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

PROJECT_ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.25  # how often the parent samples a child's memory in /proc
LOG_TAIL_LINES = 40


# --------------------------------------------------------------------------- in the child


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
    """Write a child's result (or any document) as JSON; unknown types become strings."""
    path.write_text(json.dumps(document, default=str))


def add_role_arguments(parser: argparse.ArgumentParser, roles: Sequence[str]) -> None:
    """The hidden options `run_child` passes: ``--role`` and ``--result-file``."""
    parser.add_argument("--role", choices=tuple(roles), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)


def cache_valid(manifest_path: Path, manifest: Mapping[str, Any], files: Iterable[Path]) -> bool:
    """Does the cache hold `manifest` and every one of `files`?"""
    return (
        manifest_path.exists()
        and json.loads(manifest_path.read_text()) == manifest
        and all(f.exists() for f in files)
    )


def warm_page_cache(files: Iterable[Path]) -> int:
    """Read every file once (every path then reads equally warm bytes); total bytes read."""
    return sum(len(path.read_bytes()) for path in files)


# --------------------------------------------------------------------------- in the parent


def say(text: str) -> None:
    """Print one human-readable line now (the benches' output is read while they run)."""
    print(text, flush=True)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the project importable, plus `extra`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


def embedded_env(
    state_root: Path, customers: int, days: int, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`child_env` forcing the embedded profile on its own state root and synthetic world."""
    return child_env(
        {
            "MLOPS_PROFILE": "embedded",
            "MLOPS_STATE_ROOT": str(state_root),
            "MLOPS_SYNTHETIC__CUSTOMERS": str(customers),
            "MLOPS_SYNTHETIC__DAYS": str(days),
            **(extra or {}),
        }
    )


def lake_manifest(
    settings: Any, days: Sequence[date], version: int, **extra: Any
) -> dict[str, Any]:
    """What a bench's cached generated lake must have been made with: the world, the
    dataset's names and schema, its days (and what else the bench's lake depends on)."""
    from pipelines.demo import synthetic  # the project's: only its own children call this

    names = settings.project
    return {
        "version": version,
        "synthetic": settings.synthetic.model_dump(mode="json"),
        "dataset": [names.source.dataset, names.entity.column, names.source.timestamp],
        "schema": str(synthetic.ACTIVITY_SCHEMA),
        "days": [day.isoformat() for day in days],
        **extra,
    }


class ChildFailed(RuntimeError):
    """A bench child exited non-zero, wrote no result, or was stopped (timeout, RSS cap)."""


def proc_status_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a live process, in MiB; empty once it is gone."""
    figures = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    figures[key] = round(int(value.split()[0]) / 1024.0, 1)
    except (OSError, ValueError):
        return {}
    return figures


def _stop_reason(
    status: dict[str, float], elapsed: float, timeout_s: float | None, rss_cap_mb: float | None
) -> str | None:
    """Why a running child must be stopped now, if it must."""
    if rss_cap_mb is not None and status.get("VmRSS", 0.0) > rss_cap_mb:
        return "memory_cap"
    if timeout_s is not None and elapsed > timeout_s:
        return "timeout"
    return None


def _watch(
    child: subprocess.Popen[bytes], timeout_s: float | None, rss_cap_mb: float | None
) -> tuple[str | None, float]:
    """Poll the child until it exits or must be stopped; (why stopped, highest VmHWM seen)."""
    started = time.perf_counter()
    observed_peak = 0.0
    while child.poll() is None:
        status = proc_status_mb(child.pid)
        observed_peak = max(observed_peak, status.get("VmHWM", 0.0))
        stopped = _stop_reason(status, time.perf_counter() - started, timeout_s, rss_cap_mb)
        if stopped:
            _kill(child)
            return stopped, observed_peak
        time.sleep(POLL_S)
    return None, observed_peak


def _kill(child: subprocess.Popen[bytes]) -> None:
    """Kill the session the child was started in (it and whatever it spawned), then reap it."""
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines a child wrote (stdout and stderr)."""
    if not log_path.exists():
        return ""
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def _failure_status(stopped: str | None, returncode: int | None) -> str:
    """One word for how a child ended without a result."""
    if stopped is not None:
        return stopped
    if returncode == -signal.SIGKILL:
        return "killed (out of memory?)"
    return f"failed (exit {returncode})"


def run_child(
    module: str,
    role: str,
    workdir: Path,
    env: Mapping[str, str],
    args: Sequence[str] = (),
    *,
    python: str = sys.executable,
    tag: str | None = None,
    timeout_s: float | None = None,
    rss_cap_mb: float | None = None,
    tolerate_failure: bool = False,
) -> dict[str, Any]:
    """Run `role` of `module` in a fresh interpreter and return the JSON it wrote.

    The child gets ``--role role --result-file <workdir>/<tag>.json`` and `args`; its
    output goes to ``<workdir>/<tag>.log`` (`tag` defaults to the role). While it runs,
    its memory is sampled in ``/proc``; over `rss_cap_mb` (VmRSS) or after `timeout_s` it
    is killed. The result gains ``process_wall_s`` (start-up included). On failure this
    raises `ChildFailed` with the log's tail; with `tolerate_failure` it returns
    ``{"status", "elapsed_s", "observed_peak_rss_mb", "timeout_s", "rss_cap_mb",
    "detail"}`` instead.
    """
    tag = tag or role
    result_file = workdir / f"{tag}.json"
    result_file.unlink(missing_ok=True)
    log_path = workdir / f"{tag}.log"
    command = [python, "-m", module, "--role", role, "--result-file", str(result_file), *args]
    started = time.perf_counter()
    with log_path.open("w") as log:
        child = subprocess.Popen(
            command, env=dict(env), cwd=PROJECT_ROOT, stdout=log, stderr=log, start_new_session=True
        )
        try:
            stopped, observed_peak = _watch(child, timeout_s, rss_cap_mb)
        finally:
            _kill(child)  # only if still running: an interrupted parent leaves no orphan
    elapsed = time.perf_counter() - started
    if stopped is None and child.returncode == 0 and result_file.exists():
        loaded: dict[str, Any] = json.loads(result_file.read_text())
        loaded["process_wall_s"] = round(elapsed, 2)
        return loaded
    tail = _log_tail(log_path)
    status = _failure_status(stopped, child.returncode)
    if not tolerate_failure:
        raise ChildFailed(
            f"bench child {tag!r} of {module}: {status} after {elapsed:.1f} s "
            f"(log {log_path}):\n{tail}"
        )
    return {
        "status": status,
        "elapsed_s": round(elapsed, 1),
        "observed_peak_rss_mb": observed_peak,
        "timeout_s": timeout_s,
        "rss_cap_mb": rss_cap_mb,
        "detail": tail.splitlines()[-3:] if tail else [],
    }


# --------------------------------------------------------------------------- figures


def ratio(numerator: float | None, denominator: float | None, digits: int = 2) -> float | None:
    """`numerator / denominator` rounded, or None when either is missing or the divisor <= 0."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, digits)


def rate(rows: int, wall: float | None) -> float | None:
    """Rows per second, rounded to a whole number; None without a wall time."""
    return round(rows / wall) if wall else None


def median_of(runs: Sequence[Mapping[str, Any]], key: str) -> float:
    """The median of `key` over repeated runs of one path."""
    return statistics.median(float(run[key]) for run in runs)


def max_of(runs: Sequence[Mapping[str, Any]], key: str) -> float:
    """The highest `key` over repeated runs of one path (peaks)."""
    return max(float(run[key]) for run in runs)


def wall_runs(runs: Sequence[Mapping[str, Any]]) -> list[float]:
    """Every run's wall time, rounded, in run order (reported when a path ran repeatedly)."""
    return [round(float(run["wall_s"]), 3) for run in runs]


# --------------------------------------------------------------------------- targets


class Target(NamedTuple):
    """One stated target: `met` is None when this run could not measure it."""

    name: str
    value: Any
    bound: str
    met: bool | None


def at_least(name: str, value: float | None, minimum: float, unit: str = "") -> Target:
    """`value` >= `minimum`; not measured (met None) without a value."""
    met = None if value is None else value >= minimum
    return Target(name, value, f">= {minimum}{unit}", met)


def at_most(name: str, value: float | None, maximum: float, unit: str = "") -> Target:
    """`value` <= `maximum`; not measured (met None) without a value."""
    met = None if value is None else value <= maximum
    return Target(name, value, f"<= {maximum}{unit}", met)


def verdict(met: bool | None) -> str:
    """``met``, ``MISSED`` or, when this run could not measure it, ``not measured``."""
    return "not measured" if met is None else ("met" if met else "MISSED")


def target_line(target: Target) -> str:
    """``target <name>: <value> vs <bound>: met|MISSED``."""
    value = "n/a" if target.value is None else target.value
    return f"target {target.name}: {value} vs {target.bound}: {verdict(target.met)}"


def print_targets(targets: Sequence[Target]) -> None:
    """One line per target (the benches print them just before their JSON line)."""
    for target in targets:
        say(target_line(target))


def all_met(targets: Sequence[Target]) -> bool | None:
    """False if any target is missed, True if every one is met, else None (some unmeasured)."""
    if any(t.met is False for t in targets):
        return False
    return True if all(t.met for t in targets) else None


def targets_json(
    targets: Sequence[Target], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON ``targets``: a bench's own keys (`extra`), ``checks`` and ``all_met``."""
    return {
        **(extra or {}),
        "checks": [target._asdict() for target in targets],
        "all_met": all_met(targets),
    }
