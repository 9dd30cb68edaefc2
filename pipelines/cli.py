"""`python -m pipelines <command>`: the same jobs the DAGs run, from a shell.

python -m pipelines generate --start 2026-01-01 --days 3 [--fault unknown_category]
python -m pipelines validate 2026-01-02       # also publish, materialize: one task of a night
python -m pipelines score 2026-01-02          # batch_scoring: plan, shards, publish, shadow
python -m pipelines drift 2026-01-02 [--retrain]
python -m pipelines run --from 2026-01-01 --to 2026-01-03 [--retrain]   # the nightly chain
python -m pipelines reproduce --date 2026-01-02 [--entity ID ...]   # recompute from lineage
python -m pipelines train [--as-of 2026-01-03] [--start D] [--end D] [--reason T] ...
python -m pipelines apply
python -m pipelines registry card 3 [--json]  # a version's model card; also: registry history
python -m pipelines demo
python -m pipelines ui                        # Airflow until Ctrl-C, its UI on 127.0.0.1:8080
python -m pipelines airflow -- dags list      # any airflow command, on the project's home
python -m pipelines serve                     # online scores until Ctrl-C, on 127.0.0.1:8000
python -m pipelines settings                  # secrets redacted
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import ValidationError

from pipelines import contracts, security, training_request
from pipelines.contracts import XCom
from pipelines.demo import synthetic
from pipelines.errors import ConfigurationError, PipelineError
from pipelines.io import feast_store, orchestrator
from pipelines.jobs import batch_scoring, drift_monitor, feature_pipeline, training
from pipelines.settings import Settings, load_settings

if TYPE_CHECKING:
    from pipelines.io.orchestrator import LocalAirflow

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
UI_WATCH_SECONDS = 10.0
Commands = argparse._SubParsersAction  # what `add_subparsers` gives


class Step(NamedTuple):
    """A `feature_pipeline` task the CLI runs for a night: its task id, job and help."""

    task: str
    job: Callable[[date], Any]
    help: str


# `feature_pipeline`'s tasks in its DAG's order, after `check_landed` (which only waits:
# here `validate` says the partition has not landed). Each is a command of its own, and
# `run` runs them for every night: a task added to the DAG is one line here.
FEATURE_STEPS = (
    Step("validate", feature_pipeline.validate_partition, "run the validation gate on a night"),
    Step("publish", feature_pipeline.publish_partition, "publish a night's validated partition"),
    Step("build_features", feature_pipeline.build_features, "build a night's features from events"),
    Step("build_labels", feature_pipeline.build_labels, "derive the labels a night's events tell"),
    Step("materialize", feature_pipeline.materialize, "materialize a night into the online store"),
)

RETRAIN_HELP = (
    "when the drift check requests retraining, train, gate and promote or reject a candidate "
    "at once, as of the night (the `training` run the DAG would start); without it nothing is "
    "trained and the decision is printed with the command that trains"
)
COOLDOWN_NOTE = (
    "The cooldown between retrain requests counts only the requests this command made: the "
    "CLI does not see Airflow's `retrain_request` events or its running `training` runs."
)


class Document(str):
    """A command's result for people (a model card's markdown): printed as it is, not as JSON."""


class TaskFailed(PipelineError):
    """A DAG task's job failed when the CLI ran it: which task (`dag.task`), and why."""

    def __init__(self, task: str, reason: str) -> None:
        super().__init__(f"{task} failed: {reason}")
        self.task = task
        self.reason = reason


@dataclass(frozen=True)
class RequestEvent:
    """A retrain request this command made, shaped as the `retrain_request` asset's events
    the DAG's `needs_retraining` reads: its extra, and when it was made."""

    extra: XCom
    timestamp: datetime


def _night(text: str) -> date:
    """A night argument: exactly YYYY-MM-DD, else argparse's one-line error (exit code 2)."""
    return date.fromisoformat(training_request.day(text))


def _parser() -> argparse.ArgumentParser:
    """Every command, its arguments and help."""
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_nightly(commands)
    _add_training(commands)
    _add_operations(commands)
    return parser


def _add_nightly(commands: Commands) -> None:
    """Commands about nights: landing, each feature task, scoring, drift, the chain."""
    generate = commands.add_parser("generate", help="land generated raw partitions")
    generate.add_argument("--start", type=_night, help="first day (YYYY-MM-DD)")
    generate.add_argument("--days", type=int, help="number of consecutive days")
    generate.add_argument("--fault", choices=[fault.value for fault in synthetic.Fault])
    for step in FEATURE_STEPS:
        command = commands.add_parser(step.task, help=step.help)
        command.add_argument("night", type=_night, help="YYYY-MM-DD")
    score = commands.add_parser(
        "score",
        help="score a night with the champion (the batch_scoring DAG's tasks)",
        description="Plan, score every shard, publish and shadow-score one night, as the "
        "batch_scoring DAG does; prints where the predictions are and the model version.",
    )
    score.add_argument("night", type=_night, help="YYYY-MM-DD")
    drift = commands.add_parser(
        "drift",
        help="check a scored night for drift and decide on retraining (drift_monitor)",
        description="Check one scored night for drift and write its report, as the "
        "drift_monitor DAG does; prints the verdict, where the report is and the retrain "
        f"decision. {COOLDOWN_NOTE}",
    )
    drift.add_argument("night", type=_night, help="YYYY-MM-DD")
    drift.add_argument("--retrain", action="store_true", help=RETRAIN_HELP)
    reproduce = commands.add_parser(
        "reproduce",
        help="recompute a night's published predictions from their lineage, bit for bit",
        description="Recompute a published predictions partition, or the rows of the given "
        "entities, with the model version, run and feature window its lineage names (not the "
        "champion of now); prints a report: equal, or the first differing rows with why. "
        "Exit code 0 when bit-exact equal, 1 otherwise (the report is printed either way).",
    )
    reproduce.add_argument(
        "--date", type=_night, required=True, metavar="YYYY-MM-DD", help="the scored night"
    )
    reproduce.add_argument(
        "--entity",
        action="append",
        default=[],
        metavar="ID",
        help="an entity id to reproduce alone (repeatable; default: the whole partition)",
    )
    run = commands.add_parser(
        "run",
        help="the nightly chain (features, scoring, drift) for each night of a range",
        description="For each night from --from to --to, in date order: "
        f"{', '.join(step.task for step in FEATURE_STEPS)}, then score, then drift, as the "
        "DAGs do. A night done before is redone (every job is idempotent by night). Stops "
        f"at the first failing night, naming it and its task. {COOLDOWN_NOTE}",
    )
    run.add_argument(
        "--from", dest="first", type=_night, required=True, metavar="YYYY-MM-DD", help="first night"
    )
    run.add_argument(
        "--to", dest="last", type=_night, required=True, metavar="YYYY-MM-DD", help="last night"
    )
    run.add_argument("--retrain", action="store_true", help=RETRAIN_HELP)
    run.add_argument(
        "--features-only",
        action="store_true",
        help="only the feature pipeline's steps: a project's history before its first model",
    )


def _add_training(commands: Commands) -> None:
    """`train`: the training DAG's steps, with the request the trigger form takes."""
    train = commands.add_parser("train", help="build a training set, train, gate and promote")
    train.add_argument(
        "--as-of",
        type=_night,
        metavar="YYYY-MM-DD",
        help="labels known on this day make the training set, which is saved as "
        "as_of=YYYY-MM-DD (default: the day the latest labels landed)",
    )
    train.add_argument(
        "--start", type=training_request.day, help="first prediction day (YYYY-MM-DD)"
    )
    train.add_argument("--end", type=training_request.day, help="last prediction day (YYYY-MM-DD)")
    train.add_argument("--reason", default="manual training from the command line")
    train.add_argument(
        "--hyperparameters",
        type=training_request.hyperparameters,
        default={},
        help="JSON, e.g. '{\"max_depth\": 6}'",
    )
    train.add_argument(
        "--gate-overrides",
        type=training_request.gate_overrides,
        default={},
        help='JSON, e.g. \'{"roc_auc": {"threshold": 0.7}}\'',
    )
    infra = commands.add_parser("infra-check", help="load a version and score a sample (fresh)")
    infra.add_argument("version")
    infra.add_argument("sample", help="parquet file of feature rows")


def _add_operations(commands: Commands) -> None:
    """The registry, the settings, and the services the project runs."""
    commands.add_parser("apply", help="register the Feast repository (feast apply)")
    project = commands.add_parser("project", help="start a project from a sample of your data")
    project.add_argument("what", choices=["init"])
    project.add_argument("name", help="the project's name: projects/NAME/project.yaml")
    project.add_argument(
        "--from-parquet", dest="sample", type=Path, required=True, help="a sample parquet file"
    )
    project.add_argument("--dataset", help="the raw dataset's name (default: the file's stem)")
    registry = commands.add_parser(
        "registry", help="the model registry: its audit trail, a version's model card"
    )
    registry_commands = registry.add_subparsers(dest="what", required=True)
    registry_commands.add_parser("history", help="every alias move, oldest first")
    card = registry_commands.add_parser(
        "card",
        help="a registered version's model card",
        description="Print a registered version's model card (markdown): its training data, "
        "features, metrics, the gate's verdict against the champion, the infra check, the "
        "decision, and the project's intended use and limitations.",
    )
    card.add_argument("version", help="a registered version of the project's model, e.g. 3")
    card.add_argument("--json", action="store_true", help="print the card's JSON instead")
    rollback = commands.add_parser("rollback", help="restore a previous champion")
    rollback.add_argument("--to", dest="to_version", help="version (default: previous champion)")
    rollback.add_argument("--reason", default="manual rollback from the command line")
    commands.add_parser("demo", help="run the demo timeline through Airflow")
    commands.add_parser("settings", help="print the effective settings as JSON, secrets redacted")
    commands.add_parser(
        "ui", help="run Airflow on the project's home until Ctrl-C (UI on 127.0.0.1:8080)"
    )
    commands.add_parser("mlflow-ui", help="start the MLflow UI (:5000) on the embedded backend")
    commands.add_parser(
        "serve", help="serve online scores of the champion until Ctrl-C (on 127.0.0.1:8000)"
    )
    airflow = commands.add_parser("airflow", help="run an airflow command on the project's home")
    airflow.add_argument("args", nargs=argparse.REMAINDER)


def _run(args: argparse.Namespace) -> Any:
    """The command's result, printed as JSON: the jobs the DAGs' tasks call."""
    from pipelines.demo import landing
    from pipelines.jobs import model_rollback

    steps = {step.task: step for step in FEATURE_STEPS}
    if args.command in steps:
        return _feature_step(steps[args.command], args.night)
    match args.command:
        case "generate":
            return landing.generate(args.start, args.days, args.fault)
        case "score":
            return _score(args.night)
        case "drift":
            return _drift(args.night, args.retrain, ())
        case "run":
            return _run_nights(args.first, args.last, args.retrain, args.features_only)
        case "reproduce":
            from pipelines.scoring import reproduction

            settings = load_settings()
            ids = reproduction.entity_ids(settings, args.entity)
            report = reproduction.reproduce(settings, args.date, ids)
            if not report["equal"]:  # the report still printed, then `error: ...`, exit 1
                print(json.dumps(report, indent=2, default=str))
                raise reproduction.not_reproduced(report)
            return report
        case "apply":
            settings = load_settings()
            feast_store.apply_repo(settings)
            return str(feast_store.write_feature_store_yaml(settings))
        case "train":
            return _train(args)
        case "project":
            from pipelines.scaffold import init_project

            return str(init_project(args.name, args.sample, args.dataset))
        case "registry" if args.what == "card" and args.json:
            return model_rollback.model_card_json(args.version)
        case "registry" if args.what == "card":
            return Document(model_rollback.model_card_markdown(args.version))
        case "registry":
            return model_rollback.registry_history()
        case "rollback":
            return model_rollback.rollback(args.to_version, args.reason, _actor(), "cli")
        case "infra-check":
            return training.infra_check_here(args.version, args.sample)
        case "settings":
            return security.redacted_settings(load_settings())
        case "serve":
            from pipelines.serving.app import serve

            serve(load_settings())
            return None
        case "demo":
            from pipelines.demo import timeline

            timeline.run(load_settings())
            return None
    raise AssertionError(args.command)


@contextmanager
def _task(task: str) -> Iterator[None]:
    """Name the DAG task (`dag.task`) a failure comes from; an unexpected error's traceback
    is logged, since no Airflow task log keeps it here."""
    try:
        yield
    except PipelineError as error:
        raise TaskFailed(task, str(error)) from error
    except Exception as error:
        log.exception("%s failed", task)
        raise TaskFailed(task, f"{type(error).__name__}: {error}") from error


def _feature_step(step: Step, night: date) -> Any:
    """One `feature_pipeline` task for a night."""
    with _task(f"feature_pipeline.{step.task}"):
        return step.job(night)


def _score(night: date) -> dict[str, Any]:
    """`batch_scoring`'s tasks for a night, in its order: plan, every shard, publish, shadow."""
    with _task("batch_scoring.plan"):
        plan = batch_scoring.plan_scoring(night)
        shards = batch_scoring.shards(plan)
    for shard in shards:
        with _task(f"batch_scoring.score_shard[{shard['index']}]"):
            batch_scoring.score_shard(plan, shard)
    with _task("batch_scoring.publish"):
        published = batch_scoring.publish_predictions(plan)
    shadow = batch_scoring.shadow_score(plan)  # reports its own failure, never raises
    return {
        "date": published["date"],
        "predictions": published["path"],
        "model_version": published["model_version"],
        "rows": published["rows"],
        "shards": len(shards),
        "shadow": shadow,
    }


def _drift(night: date, retrain: bool, earlier: Sequence[RequestEvent]) -> dict[str, Any]:
    """`drift_monitor`'s tasks for a night: the check (report written), the retrain decision
    given this command's `earlier` requests, and with `retrain` the `training` run it
    would start."""
    with _task("drift_monitor.check"):
        checked = drift_monitor.check_drift(night)
    with _task("drift_monitor.needs_retraining"):
        # The CLI's own training runs end before it goes on: none is ever active beside it.
        request = drift_monitor.retrain_request(checked, earlier, 0)
    report = contracts.DriftReport.from_xcom(checked)
    result: dict[str, Any] = {
        "date": report.day,
        "model_version": report.model_version,
        "alarm": report.alarm,
        "reasons": report.reasons,
        "drifted_features": [item.feature for item in report.drifted],
        "prediction_psi": report.prediction_psi,
        "report": report.report_html,
        "mlflow_run_id": report.mlflow_run_id,
        "retrain_request": request,
        "retraining": _decision(report, request, retrain),
    }
    if request is not None and retrain:
        result["training"] = _retrain(night, request)
    return result


def _decision(report: contracts.DriftReport, request: XCom | None, retrain: bool) -> str:
    """The retrain decision in words, and what this command does about it."""
    if request is None:
        if report.alarm:
            return "not requested: this command requested retraining within the cooldown"
        return "not needed: no alarm"
    if retrain:
        return "requested: trained as of the night (--retrain)"
    train = ["python", "-m", "pipelines", "train", "--as-of", report.day]
    command = shlex.join([*train, "--reason", request["reason"]])
    return f"requested, not trained: pass --retrain, or run {command}"


def _retrain(night: date, request: XCom) -> dict[str, Any]:
    """The `training` run a retrain request starts (its conf gives the reason), with the
    labels known on the night: a night replayed later never learns from later labels."""
    conf = drift_monitor.training_conf(request)
    with _task("training"):
        return training.train_and_gate(night, None, None, None, conf["reason"], _actor())


def _run_nights(
    first: date, last: date, retrain: bool, features_only: bool = False
) -> list[dict[str, Any]]:
    """The nightly chain for each night from `first` to `last`, in date order; the first
    night that fails stops it, with the command that resumes from that night."""
    earlier: list[RequestEvent] = []  # for the cooldown, as the asset's events are
    done: list[dict[str, Any]] = []
    for offset in range((last - first).days + 1):
        night = first + timedelta(days=offset)
        try:
            done.append(_run_night(night, retrain, earlier, features_only))
        except TaskFailed as failure:
            resume = ["python", "-m", "pipelines", "run", "--from", str(night), "--to", str(last)]
            resume += ["--retrain"] if retrain else []
            resume += ["--features-only"] if features_only else []
            raise PipelineError(
                f"night {night} failed at {failure.task}: {failure.reason}\n"
                f"{len(done)} earlier night(s) done; fix it, then resume with: "
                f"{shlex.join(resume)}"
            ) from failure
        request = None if features_only else done[-1]["drift"]["retrain_request"]
        if request is not None:
            earlier.append(RequestEvent(request, datetime.now(UTC)))
    return done


def _run_night(
    night: date, retrain: bool, earlier: Sequence[RequestEvent], features_only: bool = False
) -> dict[str, Any]:
    """One night through the nightly DAGs' tasks: the feature pipeline's, scoring, drift."""
    result: dict[str, Any] = {"date": night.isoformat()}
    for step in FEATURE_STEPS:
        result[step.task] = _feature_step(step, night)
    if features_only:
        log.info("night %s done: features only", night)
        return result
    result["score"] = _score(night)
    result["drift"] = _drift(night, retrain, earlier)
    log.info(
        "night %s done: predictions in %s (model version %s); drift report %s; retraining: %s",
        night,
        result["score"]["predictions"],
        result["score"]["model_version"],
        result["drift"]["report"],
        result["drift"]["retraining"],
    )
    return result


def _train(args: argparse.Namespace) -> dict[str, Any]:
    """`train`, as of `--as-of` (default: the day the latest labels landed)."""
    as_of = args.as_of or _latest_labels_day()
    result = training.train_and_gate(
        as_of,
        args.start,
        args.end,
        args.hyperparameters,
        args.reason,
        _actor(),
        args.gate_overrides,
    )
    return {"as_of": as_of.isoformat(), **result}


def _latest_labels_day() -> date:
    """The day the latest labels landed: `train`'s default as-of date (a replayed history is
    trained as of its own time, not today's)."""
    from pipelines.io import lake

    settings = load_settings()
    dataset = settings.project.label.dataset
    landed = lake.partition_days(settings.raw_root, dataset)
    if not landed:
        folder = settings.raw_root / dataset
        raise ConfigurationError(f"no labels have landed in {folder}: nothing to train on")
    return landed[-1]


def _run_ui(settings: Settings) -> None:
    """Airflow's components on the project's home until Ctrl-C, its UI on the settings' host
    and port (loopback by default); nothing else of it listens."""
    from pipelines.io.orchestrator import AirflowApi, AirflowError, LocalAirflow

    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)  # so Airflow is stopped, not orphaned
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request: noise here
    mlops_env = {name: value for name, value in os.environ.items() if name.startswith("MLOPS_")}
    airflow = LocalAirflow(settings, mlops_env, on_ui_address=True)
    api = AirflowApi(airflow)
    print("starting Airflow (scheduler, dag-processor, API server, triggerer) ...", flush=True)
    try:
        airflow.start()
        api.admin()  # the API server answers
        _print_login(airflow)
        while True:
            airflow.check_alive()
            time.sleep(UI_WATCH_SECONDS)
    except KeyboardInterrupt:
        print("stopping Airflow ...", flush=True)
    except (AirflowError, TimeoutError) as error:
        raise SystemExit(f"Airflow stopped: {error}\nits logs: {airflow.home}") from error
    finally:
        api.close()
        airflow.stop_and_warn()


def _stop_like_ctrl_c(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _print_login(airflow: LocalAirflow) -> None:
    """Say where the UI listens and where the admin's password is (never the password)."""
    from pipelines.io.orchestrator import ADMIN

    passwords = airflow.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    print(f"Airflow UI: {airflow.url}  (listening on {airflow.host}:{airflow.port})")
    if airflow.host not in LOOPBACK_HOSTS:
        print(f"warning: {airflow.host} is reachable from other machines")
    print(f"log in as '{ADMIN}' with the password in {passwords} (yours alone to read)")
    print(f"stop with Ctrl-C; Airflow's logs are in {airflow.home}", flush=True)


def _actor() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "cli"


def _exec_mlflow_ui(settings: Settings) -> None:
    print("MLflow UI: http://127.0.0.1:5000  (stop with Ctrl-C)", flush=True)
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "ui",
        "--backend-store-uri",
        settings.tracking_uri,
        "--registry-store-uri",
        settings.registry_uri,
        "--host",
        "127.0.0.1",
        "--port",
        "5000",
    ]
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.execv(command[0], command)


def _exec_airflow(args: list[str]) -> None:

    settings = load_settings()
    orchestrator.use_project_airflow(settings)
    argv = args[1:] if args[:1] == ["--"] else args
    os.execv(sys.executable, [sys.executable, "-m", "airflow", *argv])


def _settings_problems(error: ValidationError) -> str:
    """Pydantic's errors of the settings in one line: where, then what."""
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc'])}: {item['msg'].removeprefix('Value error, ')}"
        for item in error.errors()
    )


def main(argv: list[str] | None = None) -> int:
    """Run one command; a pipeline error prints its message and exits 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "run" and args.first > args.last:
        parser.error(f"--from {args.first} is after --to {args.last}")
    # What this command and its children create (databases, Airflow's passwords file and
    # configuration, the lake) is its owner's alone, in a state root only they can enter.
    os.umask(security.PRIVATE_UMASK)
    try:
        security.private_state_root(load_settings().state_root)
        if args.command == "airflow":
            _exec_airflow(args.args)
        if args.command == "ui":
            _run_ui(load_settings())
            return 0
        if args.command == "mlflow-ui":
            _exec_mlflow_ui(load_settings())
        result = _run(args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ValidationError as error:  # the settings or the project they load
        print(f"error: {_settings_problems(error)}", file=sys.stderr)
        return 1
    if isinstance(result, Document):
        print(result, end="")
    elif result is not None:
        # One line for machines (the infra check is parsed by its parent), indented for people.
        indent = None if args.command == "infra-check" else 2
        print(json.dumps(result, indent=indent, default=str))
    return 0
