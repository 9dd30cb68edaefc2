"""One validation for a `training` request: the DAG's Params (as Airflow itself checks a
triggered run's conf), the stdlib check of the DAG's first task, and the CLI's options.

Airflow is exercised through its own objects: `process_params` (what a task runner and
`dag.test()` do with a run's conf) and the serialized DAG's `params.deep_merge(conf)
.validate()` (what the REST API's trigger does before it creates the run). Nothing is
trained.
"""

from __future__ import annotations

import argparse
import copy
import math
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipelines import contracts, training_request
from pipelines.errors import ConfigurationError, PermanentError

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def training_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER / "training.py"))
    assert bag.import_errors == {}
    return bag.dags["training"]


@pytest.fixture(scope="module")
def served_dag(training_dag) -> Any:
    """The DAG as the API server holds it (deserialized from what the dag-processor wrote)."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(training_dag))


def trigger_refusal(served_dag, conf: dict[str, Any]) -> str | None:
    """What the REST API's trigger answers (400) for `conf`, or None when it creates the run
    (`create_dagrun`: ``self.params.deep_merge(conf).validate()``)."""
    from airflow.exceptions import ParamValidationError

    try:
        served_dag.params.deep_merge(conf).validate()
    except ParamValidationError as error:
        return str(error)
    return None


def param_accepts(served_dag, name: str, value: Any) -> bool:
    """Whether the served DAG's Param `name` takes `value` (its own `resolve`, one Param)."""
    from airflow.serialization.definitions.param import SerializedParam

    schema = served_dag.params.get_param(name).schema
    return SerializedParam(value, **schema).resolve() is not None


def task_params(training_dag, conf: dict[str, Any]) -> dict[str, Any]:
    """The `params` a task of a run with `conf` gets (raises as `dag.test()` does)."""
    from airflow.sdk.definitions.param import process_params

    # Copies: merging a conf writes its values into the DAG's (and the task's) Param objects.
    dag = SimpleNamespace(params=copy.deepcopy(training_dag.params))
    task = SimpleNamespace(params=copy.deepcopy(training_dag.get_task("build_training_set").params))
    return process_params(dag, task, conf, suppress_exception=False)


def task_refusal(training_dag, conf: dict[str, Any]) -> str | None:
    from airflow.sdk.exceptions import ParamValidationError

    try:
        task_params(training_dag, conf)
    except ParamValidationError as error:
        return str(error)
    return None


def stdlib_refusal(conf: dict[str, Any]) -> str | None:
    try:
        contracts.validate_training_request(conf)
    except ConfigurationError as error:
        return str(error)
    return None


# Each hostile request, with the field its refusal must name.
HOSTILE = [
    pytest.param({"hyperparameters": {"reg_lambda": NAN}}, "reg_lambda", id="nan"),
    pytest.param({"hyperparameters": {"reg_lambda": INF}}, "reg_lambda", id="infinity"),
    pytest.param({"hyperparameters": {"reg_alpha": -INF}}, "reg_alpha", id="minus-infinity"),
    pytest.param({"hyperparameters": {"learning_rate": NAN}}, "learning_rate", id="nan-rate"),
    pytest.param({"hyperparameters": {"n_estimators": NAN}}, "n_estimators", id="nan-integer"),
    pytest.param({"hyperparameters": {"min_child_weight": 1e308}}, "min_child_weight", id="1e308"),
    pytest.param({"hyperparameters": {"gamma": 10_001}}, "gamma", id="gamma-above-bound"),
    pytest.param({"hyperparameters": {"max_depth": "abc"}}, "max_depth", id="text"),
    pytest.param({"hyperparameters": {"n_estimators": "50"}}, "n_estimators", id="number-as-text"),
    pytest.param({"hyperparameters": {"max_depth": True}}, "max_depth", id="boolean"),
    pytest.param({"hyperparameters": {"max_depth": 4.5}}, "max_depth", id="fractional-integer"),
    pytest.param({"hyperparameters": {"learning_rate": 0}}, "learning_rate", id="rate-zero"),
    pytest.param({"hyperparameters": {"subsample": 1.01}}, "subsample", id="share-above-one"),
    pytest.param({"hyperparameters": {"max_leaves": 8}}, "max_leaves", id="unknown-name"),
    pytest.param({"hyperparameters": None}, "hyperparameters", id="hyperparameters-null"),
    pytest.param({"gate_overrides": {"roc_auc": {"threshold": -5}}}, "threshold", id="gate-neg"),
    pytest.param({"gate_overrides": {"log_loss": {"threshold": 1e9}}}, "threshold", id="gate-1e9"),
    pytest.param({"gate_overrides": {"roc_auc": {"threshold": NAN}}}, "threshold", id="gate-nan"),
    pytest.param(
        {"gate_overrides": {"roc_auc": {"min_absolute_change": INF}}},
        "min_absolute_change",
        id="gate-change-infinite",
    ),
    pytest.param(
        {"gate_overrides": {"log_loss": {"min_relative_change": 1.5}}},
        "min_relative_change",
        id="gate-relative-above-one",
    ),
    pytest.param({"gate_overrides": {"accuracy": {"threshold": 0.9}}}, "accuracy", id="metric"),
    pytest.param({"gate_overrides": {"roc_auc": {"treshold": 0.9}}}, "treshold", id="gate-field"),
    pytest.param({"gate_overrides": {"roc_auc": 0.9}}, "roc_auc", id="gate-rule-not-object"),
    pytest.param({"training_start": "2026-01-05garbage"}, "training_start", id="date-garbage"),
    pytest.param({"training_end": "20260105"}, "training_end", id="date-basic-format"),
    pytest.param({"training_start": "2026-1-5"}, "training_start", id="date-unpadded"),
    pytest.param({"training_start": "2026-02-30"}, "training_start", id="date-no-such-day"),
    pytest.param({"training_start": "2026-01-05T00:00"}, "training_start", id="date-time"),
    pytest.param({"training_start": ""}, "training_start", id="date-empty"),
    pytest.param({"reason": "   "}, "reason", id="reason-blank"),
    pytest.param({"reason": "x" * 501}, "reason", id="reason-too-long"),
]
# What Params cannot say (Airflow keeps conf keys that are no Param, and checks each Param
# alone): refused by the first task, before any work.
FIRST_TASK_ONLY = [
    pytest.param(
        {"training_start": "2026-01-05", "training_end": "2026-01-04"},
        "training_start",
        id="start-after-end",
    ),
    pytest.param({"hyperparameter": {"max_depth": 6}}, "hyperparameter", id="unknown-key"),
]
VALID = [
    {},
    {"reason": "weekly retrain"},
    {"training_start": "2026-01-05", "training_end": "2026-01-05"},
    {"training_start": None, "training_end": "2026-02-01"},
    {
        "hyperparameters": {
            "n_estimators": 5000,
            "max_depth": 16.0,
            "learning_rate": 1,
            "subsample": 0.5,
            "colsample_bytree": 1.0,
            "min_child_weight": 0,
            "reg_lambda": contracts.MAX_REGULARIZATION,
            "reg_alpha": 0.5,
            "gamma": 1e-9,
            "early_stopping_rounds": 1,
        }
    },
    {
        "gate_overrides": {
            "roc_auc": {"threshold": 0.7, "min_absolute_change": 0.01},
            "log_loss": {"threshold": 0.5, "min_relative_change": 0.05},
        }
    },
]


@pytest.mark.parametrize(("conf", "field"), HOSTILE)
def test_airflow_refuses_the_trigger_naming_the_field(training_dag, served_dag, conf, field):
    # The REST API's trigger answers 400 and creates no run ...
    refusal = trigger_refusal(served_dag, conf)
    assert refusal is not None and field in refusal, refusal
    assert refusal.startswith("Invalid input for param ")
    # ... and a task (or `dag.test()`) with that conf fails before its code runs
    refusal = task_refusal(training_dag, conf)
    assert refusal is not None and field in refusal, refusal


@pytest.mark.parametrize(("conf", "field"), HOSTILE + FIRST_TASK_ONLY)
def test_the_stdlib_check_refuses_it_naming_the_field(conf, field):
    with pytest.raises(ConfigurationError) as refused:
        contracts.validate_training_request(conf)
    message = str(refused.value)
    assert field in message and "\n" not in message
    assert issubclass(refused.type, PermanentError)  # the task fails at once, no retries


@pytest.mark.parametrize(("conf", "field"), FIRST_TASK_ONLY)
def test_what_params_cannot_say_the_first_task_refuses_before_any_work(
    training_dag, served_dag, settings, monkeypatch, conf, field
):
    from pipelines.jobs import training as jobs

    built = []
    monkeypatch.setattr(jobs, "build_training_set", lambda *args: built.append(args))
    # Given a conf Airflow's Params let through (each Param is checked alone; a key that is
    # no Param becomes one without a schema)
    assert trigger_refusal(served_dag, conf) is None
    params = task_params(training_dag, conf)

    # When the run's first task starts, then it fails with a permanent error, building nothing
    first = training_dag.get_task("build_training_set")
    dag_run = SimpleNamespace(conf=conf, run_after=datetime(2026, 2, 15, tzinfo=UTC))
    with pytest.raises(ConfigurationError, match=field):
        first.python_callable(params=params, dag_run=dag_run)
    assert built == []


@pytest.mark.parametrize("conf", VALID)
def test_a_valid_request_passes_airflow_and_the_first_task(
    training_dag, served_dag, settings, monkeypatch, conf
):
    from pipelines.jobs import training as jobs

    built = []

    def build(as_of, request):
        built.append((request["training_start"], request["training_end"]))
        return {"path": "set.parquet", "request": request}

    monkeypatch.setattr(jobs, "build_training_set", build)
    assert trigger_refusal(served_dag, conf) is None
    params = task_params(training_dag, conf)

    first = training_dag.get_task("build_training_set")
    dag_run = SimpleNamespace(conf=conf, run_after=datetime(2026, 2, 15, tzinfo=UTC))
    result = first.python_callable(params=params, dag_run=dag_run)

    # The later tasks take the checked request from the first task's result
    request = contracts.validate_training_request(conf)
    assert built == [(request.training_start, request.training_end)]
    assert result == {"path": "set.parquet", "request": request.to_conf()}
    assert result["request"]["reason"] == conf.get("reason", contracts.DEFAULT_TRAINING_REASON)


def test_the_checked_request_is_typed_and_json_friendly():
    request = contracts.validate_training_request(
        {
            "training_start": "2026-01-01",
            "hyperparameters": {"n_estimators": 50.0, "learning_rate": 1, "reg_lambda": 2},
            "gate_overrides": {"roc_auc": {"threshold": 1}},
            "reason": "drift on tenure",
        }
    )
    assert request.training_start == "2026-01-01" and request.training_end is None
    # Integers stay integers (50.0 is JSON's 50), the rest are floats, as XGBoost takes them
    assert request.hyperparameters == {"n_estimators": 50, "learning_rate": 1.0, "reg_lambda": 2.0}
    assert type(request.hyperparameters["n_estimators"]) is int
    assert type(request.hyperparameters["reg_lambda"]) is float
    assert request.gate_overrides == {"roc_auc": {"threshold": 1.0}}
    assert request.to_conf()["reason"] == "drift on tenure"
    assert contracts.validate_training_request(None) == contracts.validate_training_request({})


# Values at and around each bound: Airflow's schema and the stdlib check agree on every one.
PROBES = [0, 1e-9, 0.5, 1, 1.0, 1.5, 2, 16, 17, 1000, 1001, 5000, 5001, 1e4, 10_000.5]
PROBES += [-1, -1e-9, 1e308, 10**30, NAN, INF, -INF, True, False, None, "1", [], {}]


@pytest.mark.parametrize("name", list(contracts.HYPERPARAMETER_BOUNDS))
def test_airflow_and_the_stdlib_check_agree_on_every_bound(served_dag, name):
    for value in PROBES:
        conf = {"hyperparameters": {name: value}}
        airflow_accepts = param_accepts(served_dag, "hyperparameters", {name: value})
        stdlib_accepts = stdlib_refusal(conf) is None
        assert airflow_accepts == stdlib_accepts, (name, value)
        if isinstance(value, float) and not math.isfinite(value):
            assert not airflow_accepts, (name, value)


GATE_PROBES = [0, 0.5, 1, 1.01, 9.99, 10, 10.01, -1e-9, NAN, INF, -INF, True, None, "1"]


@pytest.mark.parametrize("metric", list(contracts.GATE_METRIC_RANGES))
def test_airflow_and_the_stdlib_check_agree_on_every_gate_bound(served_dag, metric):
    for field in ("threshold", "min_absolute_change", "min_relative_change"):
        for value in GATE_PROBES:
            conf = {"gate_overrides": {metric: {field: value}}}
            airflow_accepts = param_accepts(served_dag, "gate_overrides", {metric: {field: value}})
            assert airflow_accepts == (stdlib_refusal(conf) is None), (metric, field, value)


@pytest.mark.parametrize(
    "reason", ["abc", "ab", "   ", " a ", "\t\n\x0b", "é" * 500, "é" * 501, "x" * 500]
)
def test_airflow_and_the_stdlib_check_agree_on_the_reason(served_dag, reason):
    conf = {"reason": reason}
    assert (trigger_refusal(served_dag, conf) is None) == (stdlib_refusal(conf) is None)


@pytest.mark.parametrize(
    "day",
    [
        "2026-01-05",
        "2024-02-29",
        "2026-02-29",
        "2026-1-05",
        "\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0665",
        "2026-01-05\n",
    ],
)
def test_airflow_and_the_stdlib_check_agree_on_days(served_dag, day):
    conf = {"training_end": day}
    assert (trigger_refusal(served_dag, conf) is None) == (stdlib_refusal(conf) is None), day


def test_only_metrics_the_gate_judges_may_be_overridden(settings):
    # Given the default gate (roc_auc and log_loss): pr_auc is a metric, but not gated
    assert training_request.gated_metrics(settings) == ("roc_auc", "log_loss")
    conf = {"gate_overrides": {"pr_auc": {"threshold": 0.5}}}
    assert contracts.validate_training_request(conf).gate_overrides  # a known metric

    with pytest.raises(ConfigurationError, match=r"gate_overrides\.pr_auc: the gate does not"):
        training_request.check(conf, settings)
    assert training_request.check({"gate_overrides": {"log_loss": {}}}, settings)


# The CLI's options -----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    """The `train` command's options as `pipelines.cli` declares them."""
    parser = argparse.ArgumentParser(prog="python -m pipelines train")
    parser.add_argument("--start", type=training_request.day)
    parser.add_argument("--end", type=training_request.day)
    parser.add_argument("--hyperparameters", type=training_request.hyperparameters, default={})
    parser.add_argument("--gate-overrides", type=training_request.gate_overrides, default={})
    return parser


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--start", "2026-01-05garbage"], "argument --start: '2026-01-05garbage' is not a date"),
        (["--end", "20260105"], "argument --end: '20260105' is not a date"),
        (["--hyperparameters", '{"reg_lambda": Infinity}'], "reg_lambda: must be a finite"),
        (["--hyperparameters", '{"reg_lambda": NaN}'], "reg_lambda: must be a finite"),
        (["--hyperparameters", '{"max_depth": "abc"}'], "max_depth: must be an integer"),
        (["--hyperparameters", '{"max_leaves": 8}'], "unknown hyperparameter 'max_leaves'"),
        (["--hyperparameters", "{max_depth: 6}"], "argument --hyperparameters: not JSON"),
        (["--hyperparameters", "[6]"], "must be a JSON object"),
        (["--gate-overrides", '{"roc_auc": {"threshold": -5}}'], "roc_auc.threshold: must be"),
    ],
)
def test_the_cli_refuses_a_bad_option_while_parsing(capsys, argv, complaint):
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert complaint in error and "Traceback" not in error, error


def test_the_cli_options_become_a_checked_request(settings):
    args = _parser().parse_args(
        ["--start", "2026-01-01", "--end", "2026-01-31", "--hyperparameters", '{"max_depth": 6}']
    )
    conf = {
        "training_start": args.start,
        "training_end": args.end,
        "hyperparameters": args.hyperparameters,
        "gate_overrides": args.gate_overrides,
        "reason": "manual training from the command line",
    }
    request = training_request.check(conf, settings)
    assert (request.training_start, request.training_end) == ("2026-01-01", "2026-01-31")
    assert request.hyperparameters == {"max_depth": 6}

    # A window that ends before it starts is refused before anything is built
    backwards = {**conf, "training_start": "2026-02-01"}
    with pytest.raises(ConfigurationError, match="training_start: 2026-02-01 is after"):
        training_request.check(backwards, settings)


def test_promotion_route_follows_gate_infra_check_and_approval_setting(
    training_dag, settings, monkeypatch
):
    from pipelines.registry import evaluation

    route = training_dag.get_task("decide").python_callable

    def gate(passed: bool) -> dict:
        reasons = [] if passed else ["worse"]
        return contracts.GateDecision(passed, reasons, "2", "1", {}).to_xcom()

    def infra(passed: bool, detail: str = "ok") -> dict:
        return contracts.InfraCheck(passed, 10, 1.0, detail).to_xcom()

    assert route(gate(True), infra(True)) == "promote"
    assert route(gate(False), infra(True)) == "reject"
    assert route(gate(True), infra(False, "too big")) == "reject"
    monkeypatch.setenv("MLOPS_GATE__REQUIRE_APPROVAL", "true")
    assert route(gate(True), infra(True)) == ["approve", "promote"]
    failed = contracts.GateDecision.from_xcom(gate(False))
    assert evaluation.rejection_reason(failed, contracts.InfraCheck(False, 10, 1.0, "too big")) == (
        "gate: worse | infra check: too big"
    )
