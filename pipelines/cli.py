"""`python -m pipelines <command>`: the same jobs the DAGs run, from a shell.

python -m pipelines generate --start 2026-01-01 --days 3 [--fault unknown_category]
python -m pipelines validate 2026-01-02
python -m pipelines publish 2026-01-02
python -m pipelines materialize 2026-01-02
python -m pipelines apply
python -m pipelines demo
python -m pipelines ui                        # Airflow until Ctrl-C, its UI on 127.0.0.1:8080
python -m pipelines airflow -- dags list      # any airflow command, on the project's home
python -m pipelines settings                  # secrets redacted
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import security, training_request
from pipelines.demo import synthetic
from pipelines.errors import PipelineError
from pipelines.io import feast_store, orchestrator
from pipelines.settings import Settings, load_settings

if TYPE_CHECKING:
    from pipelines.io.orchestrator import LocalAirflow

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
UI_WATCH_SECONDS = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="land generated raw partitions")
    generate.add_argument("--start", type=date.fromisoformat, help="first day (YYYY-MM-DD)")
    generate.add_argument("--days", type=int, help="number of consecutive days")
    generate.add_argument("--fault", choices=[fault.value for fault in synthetic.Fault])

    for name, text in (
        ("validate", "run the validation gate on a day's raw partition"),
        ("publish", "publish a day's validated partition"),
        ("materialize", "materialize a day's window into the online store"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("day", type=date.fromisoformat, help="YYYY-MM-DD")

    commands.add_parser("apply", help="register the Feast repository (feast apply)")

    train = commands.add_parser("train", help="build a training set, train, gate and promote")
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

    registry = commands.add_parser("registry", help="the model registry's audit trail")
    registry.add_argument("what", choices=["history"])

    rollback = commands.add_parser("rollback", help="restore a previous champion")
    rollback.add_argument("--to", dest="to_version", help="version (default: previous champion)")
    rollback.add_argument("--reason", default="manual rollback from the command line")

    infra = commands.add_parser("infra-check", help="load a version and score a sample (fresh)")
    infra.add_argument("version")
    infra.add_argument("sample", help="parquet file of feature rows")
    commands.add_parser("demo", help="run the demo timeline through Airflow")
    commands.add_parser("settings", help="print the effective settings as JSON, secrets redacted")
    commands.add_parser(
        "ui", help="run Airflow on the project's home until Ctrl-C (UI on 127.0.0.1:8080)"
    )
    commands.add_parser("mlflow-ui", help="start the MLflow UI (:5000) on the embedded backend")
    airflow = commands.add_parser("airflow", help="run an airflow command on the project's home")
    airflow.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _run(args: argparse.Namespace) -> Any:
    from pipelines.demo import landing
    from pipelines.jobs import feature_pipeline, model_rollback, training

    match args.command:
        case "generate":
            return landing.generate(args.start, args.days, args.fault)
        case "validate":
            return feature_pipeline.validate_partition(args.day)
        case "publish":
            return feature_pipeline.publish_partition(args.day)
        case "materialize":
            return feature_pipeline.materialize(args.day)
        case "apply":
            settings = load_settings()
            feast_store.apply_repo(settings)
            return str(feast_store.write_feature_store_yaml(settings))
        case "train":
            return training.train_and_gate(
                date.today(),
                args.start,
                args.end,
                args.hyperparameters,
                args.reason,
                _actor(),
                args.gate_overrides,
            )
        case "registry":
            return model_rollback.registry_history()
        case "rollback":
            return model_rollback.rollback(args.to_version, args.reason, _actor(), "cli")
        case "infra-check":
            return training.infra_check_here(args.version, args.sample)
        case "settings":
            return security.redacted_settings(load_settings())
        case "demo":
            from pipelines.demo import timeline

            timeline.run(load_settings())
            return None
    raise AssertionError(args.command)


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


def main(argv: list[str] | None = None) -> int:
    """Run one command; a pipeline error prints its message and exits 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
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
    if result is not None:
        # One line for machines (the infra check is parsed by its parent), indented for people.
        indent = None if args.command == "infra-check" else 2
        print(json.dumps(result, indent=indent, default=str))
    return 0
