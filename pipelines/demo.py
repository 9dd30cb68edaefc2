"""The demo: simulated nights of the pipeline, run through Airflow, then the first champion.

Days of raw activity land in the lake; one of them lands broken. Each night
runs the real `feature_pipeline` DAG (Airflow's `dag.test()` on the embedded
metadata database): the broken day is stopped at the validation gate and
quarantined, then re-landed corrected and re-run. Once labels have arrived
(they lag by `label_delay_days`), the `training` DAG trains a model, gates it
and promotes the first champion. The summary says where to look at the results.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq

from pipelines import lake, orchestrator, promote, synthetic
from pipelines.settings import Settings

BROKEN_DAY_INDEX = 2
BROKEN_FAULT = synthetic.Fault.UNKNOWN_CATEGORY


@dataclass(frozen=True)
class NightSummary:
    """One row of the demo's closing table."""

    day: date
    attempt: str
    state: str
    rows_validated: int
    quarantined: bool


def _rows(settings: Settings, day: date) -> int:
    path = lake.partition_file(settings.validated_root, settings.dataset.raw_dataset, day)
    return pq.read_metadata(path).num_rows if path.exists() else 0


def _online_entities(settings: Settings) -> int:
    path = settings.feast_root / "online_store.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("select name from sqlite_master")]
        view = next(t for t in tables if t.endswith(settings.dataset.feature_view))
        return connection.execute(f'select count(distinct entity_key) from "{view}"').fetchone()[0]


def _night(settings: Settings, dag: object, day: date, attempt: str) -> NightSummary:
    logical = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    outcome = orchestrator.run_dag(dag, logical)
    quarantined = not outcome.succeeded and (
        lake.partition_dir(settings.quarantine_root, settings.dataset.raw_dataset, day).exists()
    )
    failed = [task for task, state in outcome.tasks.items() if state == "failed"]
    note = f" (failed at {', '.join(failed)})" if failed else ""
    print(f"  {day.isoformat()} {attempt:<9} feature_pipeline: {outcome.state}{note}", flush=True)
    if failed and settings.alerts_file.exists():
        alert = json.loads(settings.alerts_file.read_text().splitlines()[-1])
        print("  alert: " + alert["error"].replace("\n", "\n    "), flush=True)
    return NightSummary(day, attempt, outcome.state, _rows(settings, day), quarantined)


def run(settings: Settings) -> list[NightSummary]:
    """Land the simulated days and run every night through Airflow; print the summary."""
    orchestrator.use_project_airflow(settings, log_level="CRITICAL")
    print(f"state root: {settings.state_root}", flush=True)
    print("preparing Airflow's metadata database ...", flush=True)
    orchestrator.migrate_metadata_db()
    dag = orchestrator.load_dag(settings, "feature_pipeline")
    days = synthetic.days(settings.synthetic)
    print(
        f"simulating {len(days)} nights of {settings.synthetic.customers} customers "
        f"({days[0]} to {days[-1]}); {days[BROKEN_DAY_INDEX]} lands with '{BROKEN_FAULT}'",
        flush=True,
    )
    nights = []
    for index, day in enumerate(days, start=1):
        print(f"[{index}/{len(days)}] night of {day.isoformat()}", flush=True)
        broken = index - 1 == BROKEN_DAY_INDEX
        synthetic.land_day(settings, day, BROKEN_FAULT if broken else None)
        nights.append(_night(settings, dag, day, "nightly"))
        if broken:
            synthetic.land_day(settings, day)
            nights.append(_night(settings, dag, day, "re-landed"))
    print("training the first model through the `training` DAG ...", flush=True)
    last = days[-1] + timedelta(days=1)
    training = orchestrator.run_dag(
        orchestrator.load_dag(settings, "training"),
        datetime(last.year, last.month, last.day, tzinfo=UTC),
        {"reason": "demo: first champion"},
    )
    print(f"  training: {training.state} ({_decision(training)})", flush=True)
    _print_summary(settings, nights)
    return nights


def _decision(outcome: orchestrator.DagRunOutcome) -> str:
    if outcome.tasks.get("promote") == "success":
        return "promoted"
    if outcome.tasks.get("reject") == "success":
        return "rejected"
    failed = [task for task, state in outcome.tasks.items() if state == "failed"]
    return f"failed at {', '.join(failed)}" if failed else outcome.state


def _print_summary(settings: Settings, nights: list[NightSummary]) -> None:
    print("\nday         attempt    run      rows validated  quarantined")
    for night in nights:
        print(
            f"{night.day.isoformat()}  {night.attempt:<9}  {night.state:<7}  "
            f"{night.rows_validated:>14}  {'yes' if night.quarantined else 'no'}"
        )
    print(f"\nonline store holds {_online_entities(settings)} customers' latest features.")
    print("\nmodel registry audit trail:")
    for move in promote.history(settings):
        print(
            f"  {move.when[:19]}  {move.action:<8} {move.alias:<18} "
            f"v{move.from_version or '-'} -> v{move.to_version or '-'}  ({move.reason})"
        )
    print("\nwhere to look:")
    print(f"  Data Docs (every validation): file://{settings.data_docs_index}")
    print(f"  quarantined partitions:       {settings.quarantine_root}")
    print(f"  validated lake:               {settings.validated_root}")
    print(f"  Feast online store (SQLite):  {settings.feast_root / 'online_store.db'}")
    print(
        "  Feast CLI:                    "
        f".venv/bin/feast -c feature_repo -f {settings.feast_root / 'feature_store.yaml'} "
        "feature-views list"
    )
    print(f"  alerts raised:                {settings.alerts_file}")
    print("  DAG runs in the Airflow UI:   make airflow")
    print("  MLflow UI (runs, registry):   make mlflow   (http://127.0.0.1:5000)")
    print("  registry history:             .venv/bin/python -m pipelines registry history")
