"""The whole night through the real scheduler: orchestration overhead beside the tasks' work.

One night of ``--customers`` customers runs the way production runs it: a LocalExecutor
Airflow (scheduler, dag-processor, API server, triggerer) on the embedded profile picks
up the night's landed raw partition on its schedule, and the assets carry it through
``feature_pipeline`` -> ``batch_scoring`` -> ``drift_monitor``.

* ``night_wall_s``: from the start of the night's ``feature_pipeline`` run to the end of
  its ``drift_monitor`` run (the REST API's run start and end dates);
* ``task_s``: the sum of the durations Airflow records for the tasks of the three runs;
* ``overhead_ratio`` = night_wall_s / task_s: what scheduling, asset triggers, task
  start-up and queueing add to the tasks' own time (1.0 would be none; tasks of a run
  that run at once make it smaller).

``--no-preload`` runs the stock start-up (each task imports its libraries itself:
``MLOPS_AIRFLOW__PRELOAD_TASK_LIBRARIES=false``) for comparison; ``--compare`` runs both.
The history (``--history-days`` validated nights, the feature view's TTL) is landed
straight into the validated zone and a champion is trained on a small labelled frame
before Airflow starts; the night before the measured one runs through Airflow first, so
the measured night meets a warm scheduler (its fork server started, its DAGs parsed), as
every night but the first does in production.

Run: ``.venv/bin/python -m bench.nightly [--customers 100000] [--compare]``; the last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import say

NIGHTLY_DAGS = ("feature_pipeline", "batch_scoring", "drift_monitor")
NIGHT_TIMEOUT_S = 1800.0
TRAIN_CUSTOMERS = 5_000


def _environment(state_root: Path, customers: int, history_days: int, night: date) -> dict:
    """The MLOPS variables of the bench's world: history before `night`, scheduled from the
    night before it (the warm-up)."""
    return {
        "MLOPS_STATE_ROOT": str(state_root),
        "MLOPS_SYNTHETIC__CUSTOMERS": str(customers),
        "MLOPS_SYNTHETIC__START_DATE": (night - timedelta(days=history_days)).isoformat(),
        "MLOPS_SCHEDULE__START_DATE": (night - timedelta(days=1)).isoformat(),
        "MLOPS_SCHEDULE__LANDING_POKE_INTERVAL_SECONDS": "5",
        "MLOPS_SCORING__SHADOW": "false",
    }


def _prepare(settings: Any, night: date, history_days: int) -> str:
    """History in the validated zone, the warm-up night's and the night's raw partitions
    landed, a champion; its version."""
    from pipelines.demo import synthetic, worlds
    from pipelines.registry import alias_moves
    from pipelines.training import registration

    for offset in range(history_days, 1, -1):
        worlds.land_validated(settings, night - timedelta(days=offset), labels=False)
    synthetic.land_day(settings, night - timedelta(days=1))
    synthetic.land_day(settings, night)
    small = settings.synthetic.model_copy(update={"customers": TRAIN_CUSTOMERS})
    frame = worlds.labelled_frame(settings.model_copy(update={"synthetic": small}), night)
    model = registration.train_and_register(settings, frame, None, {"reason": "bench"})
    alias_moves.promote(settings, model.version, None, "bench champion", "bench")
    return model.version


def _runs_of_the_night(api: Any, night: date) -> dict[str, dict[str, Any]]:
    """The night's run of each nightly DAG, once it has ended."""
    from pipelines import contracts

    key = contracts.partition_key(night)
    ended = {}
    for dag_id in NIGHTLY_DAGS:

        def find(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
            chosen = [run for run in runs if run["partition_key"] == key]
            return chosen[-1] if chosen else None

        ended[dag_id] = api.wait_for_run(dag_id, find, NIGHT_TIMEOUT_S, f"{dag_id} for {key}")
        if ended[dag_id]["state"] != "success":
            raise SystemExit(f"{dag_id} for {key} ended {ended[dag_id]['state']}")
    return ended


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _figures(api: Any, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Wall time of the night, each run's, and the tasks' recorded durations."""
    per_dag, task_total = {}, 0.0
    for dag_id, run in runs.items():
        instances = api.task_instances(dag_id, run["dag_run_id"])
        durations = {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): round(
                ti["duration"] or 0.0, 3
            )
            for ti in instances
        }
        wall = (_moment(run["end_date"]) - _moment(run["start_date"])).total_seconds()
        per_dag[dag_id] = {"run_wall_s": round(wall, 2), "task_s": durations}
        task_total += sum(durations.values())
    first, last = runs[NIGHTLY_DAGS[0]], runs[NIGHTLY_DAGS[-1]]
    night_wall = (_moment(last["end_date"]) - _moment(first["start_date"])).total_seconds()
    return {
        "night_wall_s": round(night_wall, 2),
        "task_s": round(task_total, 2),
        "overhead_ratio": round(night_wall / task_total, 2) if task_total else None,
        "dags": per_dag,
    }


def _one_night(state_root: Path, customers: int, history_days: int, preload: bool) -> dict:
    """Prepare a fresh world, start Airflow, measure its night, stop it."""
    from pipelines.io.orchestrator import AirflowApi, LocalAirflow
    from pipelines.settings import load_settings

    # A state root per mode: this process's MLflow client keeps its database open.
    state_root = state_root / ("preloaded" if preload else "stock")
    shutil.rmtree(state_root, ignore_errors=True)
    night = datetime.now(UTC).date() - timedelta(days=1)
    env = _environment(state_root, customers, history_days, night)
    env["MLOPS_AIRFLOW__PRELOAD_TASK_LIBRARIES"] = str(preload).lower()
    os.environ.update(env)
    settings = load_settings()
    say(f"preparing {history_days} nights of history and a champion ({customers} customers)")
    version = _prepare(settings, night, history_days)
    airflow, api = None, None
    try:
        airflow = LocalAirflow(settings, env)
        api = AirflowApi(airflow)
        airflow.start()
        api.login()
        api.wait_until_parsed(NIGHTLY_DAGS)
        say(f"night {night}: waiting for the scheduler (champion v{version}, preload {preload})")
        _runs_of_the_night(api, night - timedelta(days=1))  # the warm-up
        figures = _figures(api, _runs_of_the_night(api, night))
    finally:
        if api is not None:
            api.close()
        if airflow is not None:
            airflow.stop_and_warn()
    return {"preload": preload, "customers": customers, "night": night.isoformat(), **figures}


def _say_figures(result: dict[str, Any]) -> None:
    say(
        f"preload {result['preload']}: night {result['night_wall_s']} s, tasks "
        f"{result['task_s']} s, overhead ratio {result['overhead_ratio']}"
    )
    for dag_id, dag in result["dags"].items():
        say(f"  {dag_id}: run {dag['run_wall_s']} s; tasks {dag['task_s']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--history-days", type=int, default=7)
    parser.add_argument("--state-root", type=Path, default=Path("/tmp/bench-nightly"))
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--no-preload", action="store_true", help="tasks import for themselves")
    choice.add_argument("--compare", action="store_true", help="with and without the preload")
    args = parser.parse_args(argv)
    modes = [True, False] if args.compare else [not args.no_preload]
    results = []
    for preload in modes:
        result = _one_night(args.state_root, args.customers, args.history_days, preload)
        _say_figures(result)
        results.append(result)
    summary: dict[str, Any] = {"nights": results}
    if args.compare:
        summary["stock_task_s_vs_preloaded"] = round(results[1]["task_s"] / results[0]["task_s"], 2)
        summary["stock_night_vs_preloaded"] = round(
            results[1]["night_wall_s"] / results[0]["night_wall_s"], 2
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
