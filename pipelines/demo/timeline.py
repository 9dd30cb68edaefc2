"""The demo: a simulated world whose nights land one after another into a real Airflow.

Airflow runs as it does in production (scheduler, dag-processor, API server and
triggerer, the LocalExecutor on SQLite); the demo acts only as the data source and
as an operator using the REST API:

1. The world ends last night. Its history (every night before the first model) has
   landed and is loaded with a backfill, as `airflow backfill create` loads history.
   One night lands broken: the gate quarantines it and its run fails with an alert;
   the demo re-lands it and a second backfill reruns the failed night.
2. Once enough labels have arrived (they lag by `label_delay_days`), the demo triggers
   `training`, which gates and promotes the first champion; scoring and monitoring are
   switched on.
3. The nightly schedule starts at the first scored night. Every night lands alone, the
   scheduled run waiting for it picks it up, and its `features` event starts
   `batch_scoring` for that night, whose `predictions` event starts `drift_monitor`.
   From one night on, covariate drift is injected: the monitor raises its alarm and
   starts `training` itself (once per cooldown window); the gate promotes or rejects
   the new model.

The world is the same every time (only moved in time to end last night), so the summary
tells the same story; each `make demo` starts from a fresh state root.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines import contracts, security
from pipelines.demo import synthetic
from pipelines.io import lake
from pipelines.io.orchestrator import AirflowApi, AirflowError, LocalAirflow
from pipelines.monitoring import nightly
from pipelines.registry import journal, model_versions
from pipelines.scoring import publishing
from pipelines.settings import Settings, load_settings

BROKEN_DAY_INDEX = 2


BROKEN_FAULT = synthetic.Fault.UNKNOWN_CATEGORY


LABELLED_DAYS_FOR_FIRST_MODEL = 10


DRIFT_AFTER_SCORED_NIGHTS = 2


MARKER = "demo.json"


DEMO_DAGS = ("feature_pipeline", "batch_scoring", "drift_monitor", "training")


SCORING_DAGS = ("batch_scoring", "drift_monitor")


# Bounds on waiting for Airflow, generous for a busy machine.
NIGHT_TIMEOUT = 900.0


HISTORY_TIMEOUT = 3600.0


TRAINING_TIMEOUT = 1200.0


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


def _rows(settings: Settings, day: date) -> int:
    path = lake.partition_file(settings.validated_root, settings.project.source.dataset, day)
    return pq.read_metadata(path).num_rows if path.exists() else 0


def _predictions(settings: Settings, day: date) -> int:
    path = publishing.partition(settings, publishing.PREDICTIONS, day)
    return pq.read_metadata(path).num_rows if path.exists() else 0


def _online_entities(settings: Settings) -> int:
    path = settings.feast_root / "online_store.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("select name from sqlite_master")]
        view = next(t for t in tables if t.endswith(settings.project.source.feature_view))
        return connection.execute(f'select count(distinct entity_key) from "{view}"').fetchone()[0]


def fresh_state_root(settings: Settings) -> None:
    """Start the demo's world afresh: remove a state root an earlier demo made (never another)."""
    root = settings.state_root
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise SystemExit(
                f"{root} holds files the demo did not make: the demo starts from an empty "
                "state root. Set MLOPS_STATE_ROOT to another folder, or remove it yourself."
            )
        print(f"removing the previous demo's state under {root}", flush=True)
        shutil.rmtree(root)
    security.private_state_root(root)
    (root / MARKER).write_text(json.dumps({"made_by": "make demo", "at": _now()}) + "\n")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def demo_environment(days: int, first_scored: int, today: date) -> dict[str, str]:
    """The MLOPS variables of the demo world: the user's, plus a world ending last night
    whose schedule starts at its first scored night (the history is backfilled)."""
    env = {name: value for name, value in os.environ.items() if name.startswith("MLOPS_")}
    first = today - timedelta(days=days)
    env.setdefault("MLOPS_SYNTHETIC__START_DATE", first.isoformat())
    start = date.fromisoformat(env["MLOPS_SYNTHETIC__START_DATE"])
    env.setdefault("MLOPS_SCHEDULE__START_DATE", str(start + timedelta(days=first_scored)))
    # The demo lands each night before the scheduler looks: a short look interval keeps it brisk.
    env.setdefault("MLOPS_SCHEDULE__LANDING_POKE_INTERVAL_SECONDS", "5")
    return env


def _apply(env: dict[str, str]) -> Settings:
    os.environ.update(env)
    return load_settings()


class Demo:
    """One demo timeline against one running Airflow."""

    def __init__(self, settings: Settings, api: AirflowApi) -> None:
        self.settings = settings
        self.api = api
        self.nights: list[NightSummary] = []
        self.seen: set[str] = set()

    def _feature_run(self, day: date, run_type: str) -> dict[str, Any]:
        """The night's newest `feature_pipeline` run of a type not reported yet, once ended."""
        key = contracts.partition_key(day)

        def find(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
            chosen = [
                r
                for r in runs
                if r["partition_key"] == key
                and r["run_type"] == run_type
                and r["dag_run_id"] not in self.seen
            ]
            return chosen[-1] if chosen else None

        run = self.api.wait_for_run(
            "feature_pipeline", find, NIGHT_TIMEOUT, f"feature_pipeline for {key}"
        )
        self.seen.add(run["dag_run_id"])
        tasks = self.api.tasks("feature_pipeline", run["dag_run_id"])
        failed = [task for task, state in tasks.items() if state == "failed"]
        note = f" (failed at {', '.join(failed)})" if failed else ""
        print(f"  {day} {run_type}: feature_pipeline {run['state']}{note}", flush=True)
        if failed:
            self._print_alert(day)
        return run

    def _downstream(self, dag_id: str, day: date) -> dict[str, Any]:
        """The (one) run of an asset-triggered DAG for a night, once ended."""
        key = contracts.partition_key(day)

        def find(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
            chosen = [r for r in runs if r["partition_key"] == key]
            return chosen[-1] if chosen else None

        return self.api.wait_for_run(dag_id, find, NIGHT_TIMEOUT, f"{dag_id} for {key}")

    def _print_alert(self, day: date) -> None:
        if not self.settings.alerts_file.exists():
            return
        key = contracts.partition_key(day)
        for line in self.settings.alerts_file.read_text().splitlines():
            alert = json.loads(line)
            if alert.get("partition_key") == key:
                print("  alert: " + alert["error"].replace("\n", "\n    "), flush=True)

    def record(self, day: date, attempt: str, run: dict[str, Any], **scoring: str) -> None:
        """Add a night's row to the summary."""
        self.nights.append(
            NightSummary(
                day=day,
                attempt=attempt,
                features=run["state"],
                rows_validated=_rows(self.settings, day) if run["state"] == "success" else 0,
                predictions=_predictions(self.settings, day),
                drifted_features=scoring.get("drifted", "-"),
                prediction_psi=scoring.get("psi", "-"),
                alarm=scoring.get("alarm", "-"),
                champion=model_versions.alias_version(self.settings, contracts.CHAMPION) or "-",
            )
        )

    def history(self, days: list[date]) -> None:
        """Land the nights before the first model and load them with a backfill, as
        `airflow backfill create` does; rerun the broken one once it is landed again."""
        broken = days[BROKEN_DAY_INDEX]
        for day in days:
            synthetic.land_day(self.settings, day, BROKEN_FAULT if day == broken else None)
        backfill = self.api.backfill("feature_pipeline", str(days[0]), str(days[-1]))
        for day in days:
            self.record(day, "backfill", self._feature_run(day, "backfill"))
        self.api.wait_for_backfill(backfill["id"], NIGHT_TIMEOUT)  # one backfill at a time
        print(f"  re-landing {broken} corrected; a backfill reruns the failed night", flush=True)
        synthetic.land_day(self.settings, broken)
        self.api.backfill("feature_pipeline", str(broken), str(broken), reprocess="failed")
        self.record(broken, "rerun", self._feature_run(broken, "backfill"))

    def train(self, reason: str | None = None, run_id: str | None = None) -> str:
        """Wait for a training run (triggering it when `reason` is given); say what it did."""
        if reason is not None:
            run_id = self.api.trigger("training", conf={"reason": reason})["dag_run_id"]

        def find(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
            return next((r for r in runs if r["dag_run_id"] == run_id), None)

        run = self.api.wait_for_run("training", find, TRAINING_TIMEOUT, f"training {run_id}")
        tasks = self.api.tasks("training", run["dag_run_id"])
        if tasks.get("promote") == "success":
            champion = model_versions.alias_version(self.settings, contracts.CHAMPION)
            return f"v{champion} promoted to champion"
        if tasks.get("reject") == "success":
            rejected = next(
                m for m in reversed(journal.history(self.settings)) if m.action == "reject"
            )
            return f"v{rejected.to_version} rejected: {rejected.reason}"
        return f"training {run['state']}: {tasks}"

    def scored_night(self, day: date) -> None:
        """Land one night; its scheduled run picks it up and the assets carry it through
        scoring and monitoring (and retraining, when the monitor asks for it)."""
        synthetic.land_day(self.settings, day)
        features = self._feature_run(day, "scheduled")
        if features["state"] != "success":
            self.record(day, "scheduled", features)
            return
        scored = self._downstream("batch_scoring", day)
        print(f"  {day}: batch_scoring {scored['state']}", flush=True)
        if scored["state"] != "success":
            self.record(day, "scheduled", features, alarm="scoring failed")
            return
        checked = self._downstream("drift_monitor", day)
        self.record(day, "scheduled", features, **self._drift(day, checked))

    def _drift(self, day: date, run: dict[str, Any]) -> dict[str, str]:
        path = nightly.report_dir(self.settings, day) / "report.json"
        if run["state"] != "success" or not path.exists():
            return {"alarm": "error"}
        report = json.loads(path.read_text())
        drifted = [f["feature"] for f in report["features"] if f["level"] == "alert"]
        alarm = "alarm (cooldown)" if report["alarm"] else "no"
        print(f"  {day}: drift_monitor {run['state']}, alarm: {report['alarm']}", flush=True)
        if self.api.tasks("drift_monitor", run["dag_run_id"]).get("start_training") == "success":
            alarm = "retrain requested"
            print(f"  drift alarm: {'; '.join(report['reasons'])}", flush=True)
            outcome = self.train(run_id=contracts.retrain_run_id(contracts.partition_key(day)))
            print(f"  retraining: {outcome}", flush=True)
        return {
            "drifted": str(len(drifted)),
            "psi": f"{report['prediction_psi']:.3f}",
            "alarm": alarm,
        }


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(f"the demo was stopped (signal {signum})")


def run(settings: Settings) -> list[NightSummary]:
    """Run the whole timeline through a real Airflow and print the summary."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request: noise here
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # so Airflow is stopped, not orphaned
    days_count = settings.synthetic.days
    first_model_index = min(
        days_count - 1, settings.synthetic.label_delay_days + LABELLED_DAYS_FOR_FIRST_MODEL
    )
    env = demo_environment(days_count, first_model_index + 1, datetime.now(UTC).date())
    settings = _apply(env)
    fresh_state_root(settings)
    days = synthetic.days(settings.synthetic)
    drift_start = days[min(len(days) - 1, first_model_index + 1 + DRIFT_AFTER_SCORED_NIGHTS)]
    env.setdefault("MLOPS_SYNTHETIC__DRIFT_START", drift_start.isoformat())
    settings = _apply(env)
    world = settings.synthetic
    print(
        f"state root: {settings.state_root}\n"
        f"simulating {len(days)} nights of {world.customers} customers ({days[0]} to "
        f"{days[-1]}); {days[BROKEN_DAY_INDEX]} lands with '{BROKEN_FAULT}'; the first model "
        f"trains after {days[first_model_index]}; from {world.drift_start} "
        f"{', '.join(world.drift_features)} drift by x{1 + world.drift_magnitude:.1f}",
        flush=True,
    )
    airflow = LocalAirflow(settings, env)
    api = AirflowApi(airflow)
    # Quiet MLflow's database notes in the summary (set after Airflow took its environment).
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    started = time.monotonic()
    try:
        print("starting Airflow (scheduler, dag-processor, API server, triggerer) ...", flush=True)
        airflow.start()
        api.login()
        api.wait_until_parsed(DEMO_DAGS)
        for dag_id in SCORING_DAGS:  # no model to score with yet
            api.set_paused(dag_id, True)
        demo = Demo(settings, api)
        print(f"nights 1-{first_model_index + 1}: history, loaded by a backfill", flush=True)
        demo.history(days[: first_model_index + 1])
        print("enough labels: training the first model", flush=True)
        print(f"  first model: {demo.train('demo: first champion')}", flush=True)
        for dag_id in SCORING_DAGS:
            api.set_paused(dag_id, False)
        for index, day in enumerate(days[first_model_index + 1 :], first_model_index + 2):
            print(f"[{index}/{len(days)}] night of {day}", flush=True)
            demo.scored_night(day)
    except (AirflowError, TimeoutError) as error:
        raise SystemExit(f"the demo stopped: {error}\nAirflow's logs: {airflow.home}") from error
    finally:
        api.close()
        airflow.stop_and_warn()
    print(f"\nAirflow ran the timeline in {time.monotonic() - started:.0f} s", flush=True)
    _print_summary(settings, demo.nights)
    return demo.nights


def _print_summary(settings: Settings, nights: list[NightSummary]) -> None:
    print(
        "\nday         attempt    features  rows validated  predictions  "
        "drifted  pred PSI  alarm              champion"
    )
    for night in sorted(nights, key=lambda night: night.day):  # a rerun beside its night
        print(
            f"{night.day.isoformat()}  {night.attempt:<9}  {night.features:<8}  "
            f"{night.rows_validated:>14}  {night.predictions:>11}  {night.drifted_features:>7}  "
            f"{night.prediction_psi:>8}  {night.alarm:<17}  v{night.champion}"
        )
    print(f"\nonline store holds {_online_entities(settings)} customers' latest features.")
    print("\nmodel registry audit trail:")
    for move in journal.history(settings):
        print(
            f"  {move.when[:19]}  {move.action:<8} {move.alias:<18} "
            f"v{move.from_version or '-'} -> v{move.to_version or '-'}  ({move.reason})"
        )
    _print_where_to_look(settings)


def _print_where_to_look(settings: Settings) -> None:
    look: list[tuple[str, str | Path]] = [
        ("Data Docs (every validation)", f"file://{settings.data_docs_index}"),
        ("quarantined partitions", settings.quarantine_root),
        ("validated lake", settings.validated_root),
        ("predictions", settings.lake_root / publishing.PREDICTIONS),
        ("drift reports (JSON, HTML)", settings.state_root / "reports" / "drift"),
        ("Feast online store (SQLite)", settings.feast_root / "online_store.db"),
        ("alerts raised", settings.alerts_file),
        ("task logs", settings.airflow_home / "logs"),
        ("DAG runs in the Airflow UI", "make airflow   (the failed, quarantined night included)"),
        ("MLflow UI (runs, registry)", "make mlflow   (http://127.0.0.1:5000)"),
        ("registry history", ".venv/bin/python -m pipelines registry history"),
        ("a model version's card", ".venv/bin/python -m pipelines registry card 1"),
        ("online scores", "make serve   (http://127.0.0.1:8000, see the README's curl)"),
    ]
    print("\nwhere to look:")
    for what, where in look:
        print(f"  {what + ':':<31} {where}")
    feast = f".venv/bin/feast -c feature_repo -f {settings.feast_root / 'feature_store.yaml'}"
    print(f"  {'Feast CLI:':<31} {feast} feature-views list")
