"""`python -m pipelines <command>`: the same jobs the DAGs run, from a shell.

python -m pipelines generate --start 2026-01-01 --days 3 [--fault unknown_category]
python -m pipelines validate 2026-01-02
python -m pipelines publish 2026-01-02
python -m pipelines materialize 2026-01-02
python -m pipelines apply
python -m pipelines demo
python -m pipelines airflow -- standalone     # any airflow command, on the project's home
python -m pipelines settings
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from pipelines import synthetic
from pipelines.errors import PipelineError
from pipelines.settings import Settings, load_settings


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
    train.add_argument("--start", help="first prediction day of the window (YYYY-MM-DD)")
    train.add_argument("--end", help="last prediction day of the window (YYYY-MM-DD)")
    train.add_argument("--reason", default="manual training from the command line")
    train.add_argument(
        "--hyperparameters", type=json.loads, default={}, help="JSON, e.g. '{\"max_depth\": 6}'"
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
    commands.add_parser("settings", help="print the effective settings as JSON")
    commands.add_parser("ui", help="start Airflow standalone (UI on :8080) with the project's DAGs")
    commands.add_parser("mlflow-ui", help="start the MLflow UI (:5000) on the embedded backend")
    airflow = commands.add_parser("airflow", help="run an airflow command on the project's home")
    airflow.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _run(args: argparse.Namespace) -> Any:
    from pipelines import features, jobs

    match args.command:
        case "generate":
            return jobs.generate(args.start, args.days, args.fault)
        case "validate":
            return jobs.validate_partition(args.day)
        case "publish":
            return jobs.publish_partition(args.day)
        case "materialize":
            return jobs.materialize(args.day)
        case "apply":
            settings = load_settings()
            features.apply_repo(settings)
            return str(features.write_feature_store_yaml(settings))
        case "train":
            return jobs.train_and_gate(
                date.today(), args.start, args.end, args.hyperparameters, args.reason, _actor()
            )
        case "registry":
            return jobs.registry_history()
        case "rollback":
            return jobs.rollback(args.to_version, args.reason, _actor(), "cli")
        case "infra-check":
            return jobs.infra_check_here(args.version, args.sample)
        case "settings":
            return json.loads(load_settings().model_dump_json())
        case "demo":
            from pipelines import demo

            demo.run(load_settings())
            return None
    raise AssertionError(args.command)


def _print_login(settings: Settings) -> None:
    passwords = settings.airflow_home / "simple_auth_manager_passwords.json"
    print("Airflow UI: http://localhost:8080  (stop with Ctrl-C)")
    if passwords.exists():
        for user, password in json.loads(passwords.read_text()).items():
            print(f"log in as '{user}' with password '{password}' (kept in {passwords})")
    else:
        print(f"log in as 'admin' with the password printed below (then kept in {passwords})")
    sys.stdout.flush()


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
    from pipelines import orchestrator

    settings = load_settings()
    orchestrator.use_project_airflow(settings)
    if args == ["standalone"]:
        _print_login(settings)
    argv = args[1:] if args[:1] == ["--"] else args
    os.execv(sys.executable, [sys.executable, "-m", "airflow", *argv])


def main(argv: list[str] | None = None) -> int:
    """Run one command; a pipeline error prints its message and exits 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if args.command == "airflow":
        _exec_airflow(args.args)
    if args.command == "ui":
        _exec_airflow(["standalone"])
    if args.command == "mlflow-ui":
        _exec_mlflow_ui(load_settings())
    try:
        result = _run(args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if result is not None:
        # One line for machines (the infra check is parsed by its parent), indented for people.
        indent = None if args.command == "infra-check" else 2
        print(json.dumps(result, indent=indent, default=str))
    return 0
