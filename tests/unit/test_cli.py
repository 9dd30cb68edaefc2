"""`python -m pipelines`: the CLI runs the same jobs as the DAGs, with clear errors."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from contextlib import redirect_stdout
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from pipelines import cli, contracts
from pipelines.demo.worlds import land_validated, land_validated_history
from pipelines.io import tracking
from pipelines.io.orchestrator import LocalAirflow
from pipelines.registry import model_versions
from pipelines.scoring import publishing
from pipelines.settings import load_settings
from pipelines.training import model_card
from tests.cli_runs import restored_umask
from tests.unit.test_security import open_to_others

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_generate_validate_publish_materialize_a_day(settings):
    # Given two generated days
    generated = _cli("generate", "--start", "2026-01-01", "--days", "2")
    assert generated.returncode == 0, generated.stderr
    assert len(json.loads(generated.stdout)) == 2

    # When the second day goes through the gate and into the online store
    validated = _cli("validate", "2026-01-02")
    published = _cli("publish", "2026-01-02")
    materialized = _cli("materialize", "2026-01-02")

    # Then each step reports what it did
    assert validated.returncode == 0, validated.stderr
    assert json.loads(validated.stdout)["rows"] == settings.synthetic.customers
    assert published.returncode == 0 and "validated" in json.loads(published.stdout)
    assert materialized.returncode == 0, materialized.stderr
    assert json.loads(materialized.stdout)["entities_written"] == settings.synthetic.customers

    # And what they wrote (the lake, Feast's registry and SQLite online store, Great
    # Expectations' results) is their owner's alone, in a state root only they can enter
    assert stat.S_IMODE(settings.state_root.stat().st_mode) == 0o700
    assert (settings.feast_root / "online_store.db").exists()
    assert open_to_others(settings.state_root) == {}


def test_a_failing_gate_exits_1_and_names_the_failure(settings):
    _cli("generate", "--start", "2026-01-01", "--days", "1", "--fault", "duplicate_keys")

    result = _cli("validate", "2026-01-01")

    assert result.returncode == 1
    assert "expect_column_values_to_be_unique" in result.stderr
    assert "column 'customer_id'" in result.stderr


def test_a_missing_partition_exits_1_and_names_the_path(settings):
    result = _cli("validate", "2026-03-01")

    assert result.returncode == 1
    assert "has not landed" in result.stderr and "date=2026-03-01" in result.stderr


def test_settings_are_printed_as_json_without_their_secrets(settings, monkeypatch):
    # Given settings with credentials in their URLs
    monkeypatch.setenv("MLOPS_AIRFLOW__METADATA_URL", "postgresql://airflow:PGSECRET@db/airflow")
    monkeypatch.setenv("MLOPS_FEAST__REDIS_CONNECTION", "redis:6379,password=REDISSECRET")
    monkeypatch.setenv("MLOPS_ALERTS__WEBHOOK_URL", "https://hooks.example.com/HOOKTOKEN")

    result = _cli("settings")

    # Then they are printed with every secret redacted
    printed = json.loads(result.stdout)
    assert printed["state_root"] == str(settings.state_root)
    assert printed["airflow"]["metadata_url"] == "postgresql://airflow:***@db/airflow"
    assert printed["alerts"]["webhook_url"] == "https://hooks.example.com/***"
    assert "SECRET" not in result.stdout and "TOKEN" not in result.stdout


def test_the_mlflow_database_the_cli_creates_is_private(settings):
    result = _cli("registry", "history")

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((settings.mlflow_root / "mlflow.db").stat().st_mode) == 0o600
    assert open_to_others(settings.state_root) == {}


def test_the_ui_listens_on_loopback_and_says_where(settings, monkeypatch, capsys):
    # Given a port of the user's choice
    monkeypatch.setenv("MLOPS_AIRFLOW__UI_PORT", "8193")

    # When `python -m pipelines ui` sets up Airflow and introduces it
    airflow = LocalAirflow(load_settings(), {}, on_ui_address=True)
    cli._print_login(airflow)

    # Then its API server listens on loopback at that port, where tasks report, and the user
    # is told that address and where the admin's password is (never the password)
    env = airflow.env
    assert (env["AIRFLOW__API__HOST"], env["AIRFLOW__API__PORT"]) == ("127.0.0.1", "8193")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8193/execution/"
    printed = capsys.readouterr().out
    assert "Airflow UI: http://127.0.0.1:8193 " in printed
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] in printed
    assert "warning" not in printed

    # And listening on every interface is the user's explicit choice, and is warned about
    monkeypatch.setenv("MLOPS_AIRFLOW__UI_HOST", "0.0.0.0")
    exposed = LocalAirflow(load_settings(), {}, on_ui_address=True)
    cli._print_login(exposed)
    assert exposed.env["AIRFLOW__API__HOST"] == "0.0.0.0"
    printed = capsys.readouterr().out
    assert "Airflow UI: http://127.0.0.1:8193 " in printed
    assert "warning: 0.0.0.0 is reachable from other machines" in printed

    # While the settings' own Airflow commands (`python -m pipelines airflow -- ...`) get the
    # same address
    assert load_settings().airflow_env()["AIRFLOW__API__HOST"] == "0.0.0.0"


# The nightly commands (score, drift, run) and train's as-of date, on a small world -----------

HISTORY_END = date(2026, 2, 14)  # 45 generated nights from 2026-01-01; labels lag 30 days


@pytest.fixture(scope="module")
def world_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a world of 45 validated nights of 500 customers (labels landed
    from 2026-01-31 on) and a champion trained by `train` without `--as-of`; the trained
    result is kept beside it as `train.json`."""
    state = tmp_path_factory.mktemp("cli-world") / "state"
    env = {"MLOPS_STATE_ROOT": str(state), "MLOPS_SYNTHETIC__CUSTOMERS": "500"}
    with pytest.MonkeyPatch.context() as patch, restored_umask():
        for name, value in env.items():
            patch.setenv(name, value)
        assert land_validated_history(load_settings(), 45) == HISTORY_END
        trained, code = _main_output(["train", "--reason", "first champion"])
    assert code == 0
    (state.parent / "train.json").write_text(json.dumps(trained))
    return env


@pytest.fixture
def world(world_env, monkeypatch):
    """The module's world, for this test: its settings (the state root shared)."""
    for name, value in world_env.items():
        monkeypatch.setenv(name, value)
    with restored_umask():
        yield load_settings()


def _main(argv: list[str]) -> int:
    """`python -m pipelines` in this process: its exit code."""
    try:
        return cli.main(argv)
    except SystemExit as exited:  # argparse's usage errors
        return int(exited.code or 0)


def _main_output(argv: list[str]) -> tuple[object, int]:
    """A command run in this process: its printed JSON (stdout's) and exit code."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = _main(argv)
    return (json.loads(out.getvalue()) if code == 0 else None), code


def _predictions(settings, night: date):
    return pd.read_parquet(publishing.partition(settings, publishing.PREDICTIONS, night))


def _model_versions(settings) -> int:
    client = tracking.mlflow_client(settings)
    return len(client.search_model_versions(f"name='{settings.project.model.name}'"))


def _champion(settings) -> str:
    return model_versions.alias_version(settings, contracts.CHAMPION)


def test_train_is_as_of_the_day_the_latest_labels_landed_by_default(world):
    # Given a world whose latest labels landed on its last night, trained without --as-of
    trained = json.loads((world.state_root.parent / "train.json").read_text())

    # Then the training set is as of that night: in its name, and in the labels it holds (a
    # label is stamped the midnight after the night it is about, 30 days before it landed)
    assert trained["as_of"] == "2026-02-14"
    training_set = trained["training_set"]
    assert Path(training_set["path"]).name.startswith("as_of=2026-02-14-")
    assert Path(training_set["path"]).exists()
    assert training_set["end"] == "2026-01-16T00:00:00+00:00"

    # And the model's MLflow run records the same training set
    client = tracking.mlflow_client(world)
    run = client.get_run(trained["candidate"]["run_id"])
    assert run.data.tags["training_set.end"] == training_set["end"]
    assert run.data.tags["reason"] == "first champion"
    assert _champion(world) == trained["candidate"]["version"]


def test_train_as_of_an_earlier_day_reads_only_the_labels_known_then(world, capsys):
    # The first labels land on 2026-01-31: as of the day before, there is nothing to learn
    assert _main(["train", "--as-of", "2026-01-30"]) == 1
    assert "error: no labels have landed by 2026-01-30" in capsys.readouterr().err


def test_score_prints_where_a_nights_predictions_are_and_the_model_version(world):
    scored, code = _main_output(["score", "2026-02-14"])

    assert code == 0
    assert scored["date"] == "2026-02-14"
    assert scored["model_version"] == _champion(world)
    assert scored["rows"] == 500 and scored["shards"] >= 1
    predictions = _predictions(world, HISTORY_END)
    assert scored["predictions"] == str(
        publishing.partition(world, publishing.PREDICTIONS, HISTORY_END)
    )
    assert len(predictions) == 500
    assert set(predictions["model_version"]) == {scored["model_version"]}
    assert scored["shadow"]["status"] == "skipped"  # no challenger


def test_drift_prints_the_verdict_and_where_the_report_is(world):
    # Given a scored night
    assert _main_output(["score", "2026-02-13"])[1] == 0

    checked, code = _main_output(["drift", "2026-02-13"])

    assert code == 0
    assert checked["date"] == "2026-02-13" and checked["model_version"] == _champion(world)
    assert checked["alarm"] is False and checked["drifted_features"] == []
    assert checked["retraining"] == "not needed: no alarm"
    assert checked["retrain_request"] is None and "training" not in checked
    report = Path(checked["report"])
    assert report.name == "report.html" and report.exists()
    assert json.loads((report.parent / "report.json").read_text())["day"] == "2026-02-13"


def test_run_publishes_predictions_and_a_drift_report_for_each_night(world):
    # Given two nights landed raw
    assert _main_output(["generate", "--start", "2026-02-15", "--days", "2"])[1] == 0

    nights, code = _main_output(["run", "--from", "2026-02-15", "--to", "2026-02-16"])

    # Then each night went through every task of the DAGs, in date order
    assert code == 0
    assert [night["date"] for night in nights] == ["2026-02-15", "2026-02-16"]
    for night in nights:
        day = date.fromisoformat(night["date"])
        assert [step for step in night if step != "date"] == [
            *(step.task for step in cli.FEATURE_STEPS),
            "score",
            "drift",
        ]
        assert night["validate"]["rows"] == 500
        assert night["materialize"]["entities_written"] == 500
        assert len(_predictions(world, day)) == 500
        assert night["score"]["model_version"] == _champion(world)
        assert Path(night["drift"]["report"]).exists()
        assert night["drift"]["retraining"] == "not needed: no alarm"

    # And a night run again is redone with the same predictions
    before = _predictions(world, date(2026, 2, 16))
    assert _main_output(["run", "--from", "2026-02-16", "--to", "2026-02-16"])[1] == 0
    pd.testing.assert_frame_equal(_predictions(world, date(2026, 2, 16)), before)


def test_a_failing_night_stops_the_run_naming_it_its_task_and_how_to_resume(world, capsys):
    # Given a good night, a night that lands with a customer twice, and a good night after it
    _main_output(["generate", "--start", "2026-02-17", "--days", "1"])
    _main_output(["generate", "--start", "2026-02-18", "--days", "1", "--fault", "duplicate_keys"])
    _main_output(["generate", "--start", "2026-02-19", "--days", "1"])
    capsys.readouterr()

    code = _main(["run", "--from", "2026-02-17", "--to", "2026-02-19"])

    # Then the run stops at the bad night, saying which task failed and why, and how to resume
    assert code == 1
    error = capsys.readouterr().err
    assert "error: night 2026-02-18 failed at feature_pipeline.validate: " in error
    assert "expect_column_values_to_be_unique" in error
    assert "1 earlier night(s) done" in error
    assert "resume with: python -m pipelines run --from 2026-02-18 --to 2026-02-19" in error

    # And the night before it is done, while the night after it was not started
    assert len(_predictions(world, date(2026, 2, 17))) == 500
    validated = world.validated_root / world.project.source.dataset
    assert not (validated / "date=2026-02-19").exists()


def test_a_drift_alarm_trains_only_when_asked(world, monkeypatch):
    # Given two nights whose activity drifted, landed raw
    monkeypatch.setenv("MLOPS_SYNTHETIC__DRIFT_START", "2026-02-20")
    monkeypatch.setenv("MLOPS_SYNTHETIC__DRIFT_MAGNITUDE", "1.5")
    assert _main_output(["generate", "--start", "2026-02-20", "--days", "2"])[1] == 0

    # When both run with --retrain
    nights, code = _main_output(["run", "--from", "2026-02-20", "--to", "2026-02-21", "--retrain"])

    # Then the first night's alarm trains a candidate as of that night, with the drift as its
    # reason, and the next night's alarm (within the cooldown) trains none
    assert code == 0
    first, second = (night["drift"] for night in nights)
    assert first["alarm"] is True and {"usage_minutes", "sessions"} <= set(
        first["drifted_features"]
    )
    assert first["retrain_request"]["date"] == "2026-02-20"
    training_set = first["training"]["training_set"]
    assert Path(training_set["path"]).name.startswith("as_of=2026-02-20-")
    assert training_set["request"]["reason"].startswith("drift on 2026-02-20: ")
    assert second["alarm"] is True and second["retrain_request"] is None
    assert "within the cooldown" in second["retraining"] and "training" not in second
    assert nights[1]["score"]["model_version"] == _champion(world)

    # When a drifted night is checked again without --retrain
    versions = _model_versions(world)
    checked, code = _main_output(["drift", "2026-02-21"])

    # Then the alarm and the request are printed with the command that trains, and nothing
    # is trained
    assert code == 0 and checked["alarm"] is True
    assert checked["retrain_request"]["date"] == "2026-02-21"
    assert "python -m pipelines train --as-of 2026-02-21 --reason " in checked["retraining"]
    assert "training" not in checked
    assert _model_versions(world) == versions


def _main_text(argv: list[str]) -> tuple[str, int]:
    """A command run in this process: what it printed (stdout's) and its exit code."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = _main(argv)
    return out.getvalue(), code


def test_registry_card_prints_each_versions_model_card_with_its_decision(world, capsys):
    # Given the world's champion, promoted by `train`, and a worse candidate `train` rejects
    champion = _champion(world)
    worse = {"n_estimators": 1, "max_depth": 1}
    argv = ["train", "--hyperparameters", json.dumps(worse), "--reason", "deliberately worse"]
    trained, code = _main_output(argv)
    assert code == 0 and trained["outcome"]["action"] == "reject"
    rejected = trained["candidate"]["version"]

    # When their cards are printed
    promoted_text, promoted_code = _main_text(["registry", "card", champion])
    rejected_text, rejected_code = _main_text(["registry", "card", rejected])
    card, json_code = _main_output(["registry", "card", rejected, "--json"])

    # Then each is its markdown, printed as it is, ending with its decision
    assert promoted_code == rejected_code == json_code == 0
    assert promoted_text.startswith(f"# Model card: churn v{champion}\n\n**Decision: promoted**")
    assert rejected_text.startswith(f"# Model card: churn v{rejected}\n\n**Decision: rejected**")
    assert world.project.model.intended_use in promoted_text
    # And the JSON is what the markdown renders: the gate against the champion, the infra
    # check, the training set the candidate learned from, its features, the intended use
    assert model_card.render(card) == rejected_text
    assert card["decision"]["status"] == "rejected"
    assert card["decision"]["reason"].startswith("gate: roc_auc")
    assert card["gate"]["passed"] is False and card["gate"]["champion_version"] == champion
    assert card["gate"]["champion"]["roc_auc"] > card["gate"]["candidate"]["roc_auc"]
    assert card["infra_check"]["passed"] is True
    training_set = trained["training_set"]
    assert card["training_set"]["rows"] == training_set["rows"]
    assert card["training_set"]["label_share"] == pytest.approx(training_set["label_share"])
    assert (card["training_set"]["start"], card["training_set"]["end"]) == (
        training_set["start"],
        training_set["end"],
    )
    assert [feature["name"] for feature in card["features"]] == list(world.project.features)
    assert card["intended_use"] == world.project.model.intended_use

    # And a version the registry does not hold is refused in one line naming it
    capsys.readouterr()
    assert _main(["registry", "card", "999"]) == 1
    assert capsys.readouterr().err == "error: churn has no registered version '999'\n"
    # And `card` without a version is a usage error
    assert _main(["registry", "card"]) == 2
    assert "the following arguments are required: version" in capsys.readouterr().err


def test_train_without_any_labels_exits_1_saying_so(settings, capsys):
    with restored_umask():
        code = _main(["train"])

    assert code == 1
    assert "error: no labels have landed in " in capsys.readouterr().err


def test_scoring_without_a_champion_exits_1_naming_the_task(settings, capsys):
    land_validated(settings, date(2026, 1, 1), labels=False)

    with restored_umask():
        code = _main(["score", "2026-01-01"])

    assert code == 1
    assert "error: batch_scoring.plan failed: " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["score", "2026-02-30"], "argument night: '2026-02-30' is not a date: use YYYY-MM-DD"),
        (["drift", "20260215"], "argument night: '20260215' is not a date"),
        (["validate", "2026-1-5"], "argument night: '2026-1-5' is not a date"),
        (["run", "--from", "2026-02-15", "--to", "tomorrow"], "argument --to: 'tomorrow' is not"),
        (["run", "--from", "2026-02-16", "--to", "2026-02-15"], "--from 2026-02-16 is after --to"),
        (["run", "--to", "2026-02-15"], "the following arguments are required: --from"),
        (["train", "--as-of", "2026-02-14T00:00"], "argument --as-of: '2026-02-14T00:00' is not"),
    ],
)
def test_a_bad_night_is_refused_in_one_line_before_anything_runs(settings, capsys, argv, complaint):
    assert _main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert complaint in error[-1] and error[-1].startswith("python -m pipelines")
    assert "Traceback" not in "".join(error)
    assert not settings.state_root.exists()
