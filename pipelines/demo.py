"""The demo: a timeline of simulated nights, each run through Airflow.

1. History lands night after night through the real `feature_pipeline` DAG
   (Airflow's `dag.test()` on the embedded metadata database). One day lands
   broken: the gate stops and quarantines it, then it is re-landed and re-run.
2. Once enough labels have arrived (they lag by `label_delay_days`), the
   `training` DAG trains, gates and promotes the first champion.
3. Every later night runs `feature_pipeline`, `batch_scoring` with the champion,
   then `drift_monitor`. From one night on, covariate drift is injected into the
   activity: the monitor raises its alarm, requests retraining (once per cooldown
   window), and the `training` DAG runs with the drift as its reason; the new
   model is promoted or rejected by the gate, and scoring goes on with whichever
   model is champion.

The summary says what happened each night and where to look at the results.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq

from pipelines import lake, monitor, orchestrator, promote, score, synthetic
from pipelines.settings import Settings, load_settings

BROKEN_DAY_INDEX = 2
BROKEN_FAULT = synthetic.Fault.UNKNOWN_CATEGORY
LABELLED_DAYS_FOR_FIRST_MODEL = 10
DRIFT_AFTER_SCORED_NIGHTS = 2


@dataclass(frozen=True)
class NightSummary:
    """One row of the demo's closing table."""

    day: date
    attempt: str
    features: str
    rows_validated: int
    predictions: int
    drifted_features: str
    prediction_psi: str
    alarm: str
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


def _drift(settings: Settings, day: date) -> tuple[str, str, str]:
    outcome = _run(settings, "drift_monitor", day, {"date": day.isoformat()})
    path = monitor.report_dir(settings, day) / "report.json"
    if not outcome.succeeded or not path.exists():
        return "-", "-", "error"
    report = json.loads(path.read_text())
    drifted = [f["feature"] for f in report["features"] if f["level"] == "alert"]
    if outcome.tasks.get("request_retraining") == "success":
        alarm = "retrain requested"
        print(f"  drift alarm: {'; '.join(report['reasons'])}", flush=True)
        print(f"  retraining: {_train(settings, day, _last_request_reason(report))}", flush=True)
    else:
        alarm = "alarm (cooldown)" if report["alarm"] else "no"
    return str(len(drifted)), f"{report['prediction_psi']:.3f}", alarm


def _train(settings: Settings, day: date, reason: str) -> str:
    outcome = _run(settings, "training", day, {"reason": reason})
    if outcome.tasks.get("promote") == "success":
        return f"v{promote.alias_version(settings, promote.CHAMPION)} promoted to champion"
    if outcome.tasks.get("reject") == "success":
        rejected = next(m for m in reversed(promote.history(settings)) if m.action == "reject")
        return f"v{rejected.to_version} rejected: {rejected.reason}"
    return outcome.state


def _last_request_reason(report: dict[str, Any]) -> str:
    return f"drift on {report['day']}: {'; '.join(report['reasons'])}"


def _night(settings: Settings, day: date, attempt: str, scoring: bool) -> NightSummary:
    features = _run(settings, "feature_pipeline", day)
    drifted, prediction_psi, alarm = "-", "-", "-"
    if scoring and features.succeeded:
        scored = _run(settings, "batch_scoring", day, {"date": day.isoformat()})
        if scored.succeeded:
            drifted, prediction_psi, alarm = _drift(settings, day)
    return NightSummary(
        day=day,
        attempt=attempt,
        features=features.state,
        rows_validated=_rows(settings, day),
        predictions=_predictions(settings, day),
        drifted_features=drifted,
        prediction_psi=prediction_psi,
        alarm=alarm,
        champion=promote.alias_version(settings, promote.CHAMPION) or "-",
    )


def _with_drift(settings: Settings, days: list[date], first_model_index: int) -> Settings:
    """Settings whose generator injects drift a few scored nights after the first model.

    Set through the environment, so the DAG tasks (which load settings themselves)
    see the same world. A drift start configured by the user is kept.
    """
    start = min(len(days) - 1, first_model_index + 1 + DRIFT_AFTER_SCORED_NIGHTS)
    os.environ.setdefault("MLOPS_SYNTHETIC__DRIFT_START", days[start].isoformat())
    return load_settings()


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
    settings = _with_drift(settings, days, first_model_index)
    drift = settings.synthetic
    print(
        f"simulating {len(days)} nights of {drift.customers} customers "
        f"({days[0]} to {days[-1]}); {days[BROKEN_DAY_INDEX]} lands with '{BROKEN_FAULT}'; "
        f"the first model trains after {days[first_model_index]}; from {drift.drift_start} "
        f"{', '.join(drift.drift_features)} drift by x{1 + drift.drift_magnitude:.1f}",
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
    print(
        "\nday         attempt    features  rows validated  predictions  "
        "drifted  pred PSI  alarm              champion"
    )
    for night in nights:
        print(
            f"{night.day.isoformat()}  {night.attempt:<9}  {night.features:<8}  "
            f"{night.rows_validated:>14}  {night.predictions:>11}  {night.drifted_features:>7}  "
            f"{night.prediction_psi:>8}  {night.alarm:<17}  v{night.champion}"
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
    print(f"  drift reports (JSON, HTML):   {settings.state_root / 'reports' / 'drift'}")
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
