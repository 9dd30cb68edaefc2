"""The demo: a timeline of simulated nights, each run through Airflow.

1. History lands night after night through the real `feature_pipeline` DAG
   (Airflow's `dag.test()` on the embedded metadata database). One day lands
   broken: the gate stops and quarantines it, then it is re-landed and re-run.
2. Once enough labels have arrived (they lag by `label_delay_days`), the
   `training` DAG trains, gates and promotes the first champion.
3. Every later night runs `feature_pipeline`, then `batch_scoring` with the
   champion.

The summary says what happened each night and where to look at the results.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq

from pipelines import lake, orchestrator, promote, score, synthetic
from pipelines.settings import Settings

BROKEN_DAY_INDEX = 2
BROKEN_FAULT = synthetic.Fault.UNKNOWN_CATEGORY
LABELLED_DAYS_FOR_FIRST_MODEL = 10


@dataclass(frozen=True)
class NightSummary:
    """One row of the demo's closing table."""

    day: date
    attempt: str
    features: str
    rows_validated: int
    predictions: int
    champion: str


def _midnight_after(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def _rows(settings: Settings, day: date) -> int:
    path = lake.partition_file(settings.validated_root, settings.dataset.raw_dataset, day)
    return pq.read_metadata(path).num_rows if path.exists() else 0


def _predictions(settings: Settings, day: date) -> int:
    path = score.partition(settings, score.PREDICTIONS, day)
    return pq.read_metadata(path).num_rows if path.exists() else 0


def _online_entities(settings: Settings) -> int:
    path = settings.feast_root / "online_store.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("select name from sqlite_master")]
        view = next(t for t in tables if t.endswith(settings.dataset.feature_view))
        return connection.execute(f'select count(distinct entity_key) from "{view}"').fetchone()[0]


def _run(settings: Settings, dag_id: str, day: date, conf: dict[str, Any] | None = None) -> Any:
    outcome = orchestrator.run_dag(
        orchestrator.load_dag(settings, dag_id), _midnight_after(day), conf
    )
    failed = [task for task, state in outcome.tasks.items() if state == "failed"]
    note = f" (failed at {', '.join(failed)})" if failed else ""
    print(f"  {dag_id}: {outcome.state}{note}", flush=True)
    if failed and settings.alerts_file.exists():
        alert = json.loads(settings.alerts_file.read_text().splitlines()[-1])
        print("  alert: " + alert["error"].replace("\n", "\n    "), flush=True)
    return outcome


def _night(settings: Settings, day: date, attempt: str, scoring: bool) -> NightSummary:
    features = _run(settings, "feature_pipeline", day)
    if scoring and features.succeeded:
        _run(settings, "batch_scoring", day, {"date": day.isoformat()})
    return NightSummary(
        day=day,
        attempt=attempt,
        features=features.state,
        rows_validated=_rows(settings, day),
        predictions=_predictions(settings, day),
        champion=promote.alias_version(settings, promote.CHAMPION) or "-",
    )


def _train(settings: Settings, day: date, reason: str) -> str:
    outcome = _run(settings, "training", day, {"reason": reason})
    if outcome.tasks.get("promote") == "success":
        return "promoted"
    if outcome.tasks.get("reject") == "success":
        return "rejected"
    return outcome.state


def run(settings: Settings) -> list[NightSummary]:
    """Run the whole timeline through Airflow and print the summary."""
    orchestrator.use_project_airflow(settings, log_level="CRITICAL")
    print(f"state root: {settings.state_root}", flush=True)
    print("preparing Airflow's metadata database ...", flush=True)
    orchestrator.migrate_metadata_db()
    days = synthetic.days(settings.synthetic)
    first_model_index = min(
        len(days) - 1, settings.synthetic.label_delay_days + LABELLED_DAYS_FOR_FIRST_MODEL
    )
    print(
        f"simulating {len(days)} nights of {settings.synthetic.customers} customers "
        f"({days[0]} to {days[-1]}); {days[BROKEN_DAY_INDEX]} lands with '{BROKEN_FAULT}'; "
        f"the first model trains after {days[first_model_index]}",
        flush=True,
    )
    nights = []
    for index, day in enumerate(days):
        print(f"[{index + 1}/{len(days)}] night of {day.isoformat()}", flush=True)
        broken = index == BROKEN_DAY_INDEX
        scoring = index > first_model_index
        synthetic.land_day(settings, day, BROKEN_FAULT if broken else None)
        nights.append(_night(settings, day, "nightly", scoring))
        if broken:
            synthetic.land_day(settings, day)
            nights.append(_night(settings, day, "re-landed", scoring))
        if index == first_model_index:
            print("  enough labels: training the first model", flush=True)
            print(f"  first model: {_train(settings, day, 'demo: first champion')}", flush=True)
    _print_summary(settings, nights)
    return nights


def _print_summary(settings: Settings, nights: list[NightSummary]) -> None:
    print("\nday         attempt    features  rows validated  predictions  champion")
    for night in nights:
        print(
            f"{night.day.isoformat()}  {night.attempt:<9}  {night.features:<8}  "
            f"{night.rows_validated:>14}  {night.predictions:>11}  v{night.champion}"
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
    print(f"  predictions:                  {settings.lake_root / score.PREDICTIONS}")
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
