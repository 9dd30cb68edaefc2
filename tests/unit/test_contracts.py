"""The contracts DAG files share with the pipeline: nights as partition keys, the schedule."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import fields
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from pipelines import contracts, errors
from pipelines.settings import Settings


def test_a_night_and_its_partition_key_are_one_another():
    night = date(1998, 3, 3)
    assert contracts.partition_key(night) == "1998-03-03"
    assert contracts.night("1998-03-03") == night


@pytest.mark.parametrize(
    "key", [None, "", "2026-01-05garbage", "05/01/2026", "2026-02-30", "20260105", "2026-1-5"]
)
def test_a_run_without_a_valid_night_says_how_to_trigger_it(key):
    with pytest.raises(errors.MissingPartitionKeyError, match="YYYY-MM-DD"):
        contracts.night(key)


def test_a_missing_partition_key_is_never_retried():
    assert issubclass(errors.MissingPartitionKeyError, errors.PermanentError)


def test_the_time_rule_is_the_midnight_after_the_night():
    assert contracts.midnight_after(date(2026, 2, 28)) == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_label_is_stamped_with_the_midnight_after_its_night_and_lands_on_or_after_it():
    night = date(2026, 2, 28)
    stamp = contracts.label_time(night)

    assert stamp == datetime(2026, 3, 1, tzinfo=UTC)
    # Read back from a partition that landed that night or any later day (labels lag),
    # whatever zone the timestamp is written in
    assert contracts.labelled_night(stamp, night) == night
    assert (
        contracts.labelled_night(stamp.astimezone(ZoneInfo("Asia/Tokyo")), date(2026, 4, 1))
        == night
    )


@pytest.mark.parametrize(
    ("stamp", "landed_on", "problem"),
    [
        (datetime(2026, 3, 1, 5, tzinfo=UTC), date(2026, 3, 31), "is not a midnight (UTC)"),
        (
            datetime(2026, 3, 1, tzinfo=ZoneInfo("Europe/Paris")),
            date(2026, 3, 31),
            "is not a midnight (UTC)",
        ),
        (datetime(2026, 3, 1), date(2026, 3, 31), "has no time zone"),
        (
            datetime(2026, 3, 1, tzinfo=UTC),
            date(2026, 2, 27),
            "a label of night 2026-02-28 landed on 2026-02-27",
        ),
    ],
    ids=["not-midnight", "local-midnight", "naive", "landed-before-its-night"],
)
def test_a_label_that_breaks_the_label_rule_is_refused_saying_how(stamp, landed_on, problem):
    with pytest.raises(errors.DataQualityError) as caught:
        contracts.labelled_night(stamp, landed_on)

    assert problem in str(caught.value)


def test_the_schedule_starts_at_the_midnight_after_its_first_night():
    first = contracts.ScheduleSettings(start_date=date(2026, 2, 1))
    assert contracts.first_scheduled_run(first) == datetime(2026, 2, 2, tzinfo=UTC)
    assert contracts.first_scheduled_run(contracts.ScheduleSettings()) is None


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"MLOPS_SCHEDULE__START_DATE": "1998-03-03"},
        {"MLOPS_SCHEDULE__START_DATE": ""},
        {"mlops_schedule__landing_timeout_seconds": "60"},
        {
            "MLOPS_SCHEDULE__START_DATE": "2026-11-01",
            "MLOPS_SCHEDULE__LANDING_POKE_INTERVAL_SECONDS": "5",
            "MLOPS_SCHEDULE__LANDING_TIMEOUT_SECONDS": "600",
        },
    ],
)
def test_dag_files_read_the_schedule_the_settings_read(environ, monkeypatch):
    # Given schedule variables in the environment
    for name in [n for n in os.environ if n.upper().startswith("MLOPS_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    # Then the stdlib reader (DAG files) and the settings object agree
    assert contracts.schedule_settings() == Settings().schedule


def test_every_schedule_field_is_read_from_its_variable():
    names = {field.name for field in fields(contracts.ScheduleSettings)}
    environ = {
        "MLOPS_SCHEDULE__START_DATE": "2026-03-04",
        "MLOPS_SCHEDULE__LANDING_POKE_INTERVAL_SECONDS": "11",
        "MLOPS_SCHEDULE__LANDING_TIMEOUT_SECONDS": "22",
    }
    assert {name.removeprefix("MLOPS_SCHEDULE__").lower() for name in environ} == names
    assert contracts.schedule_settings(environ) == contracts.ScheduleSettings(
        start_date=date(2026, 3, 4), landing_poke_interval_seconds=11, landing_timeout_seconds=22
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MLOPS_SCHEDULE__START_DATE": "2026-13-01"}, "MLOPS_SCHEDULE__START_DATE"),
        ({"MLOPS_SCHEDULE__LANDING_TIMEOUT_SECONDS": "6h"}, "LANDING_TIMEOUT_SECONDS"),
        ({"MLOPS_SCHEDULE__LANDING_TIMEOUT_SECONDS": "0"}, "at least 1 second"),
        ({"MLOPS_SCHEDULE__STRAT_DATE": "2026-01-01"}, "unknown schedule settings"),
    ],
)
def test_a_bad_schedule_setting_is_an_error_naming_it(environ, message):
    with pytest.raises(ValueError, match=message):
        contracts.schedule_settings(environ)


def test_the_contracts_module_imports_only_the_standard_library():
    # DAG files import it at parse time: it must not pull in pydantic, pandas or the settings
    probe = (
        "import sys, json; import pipelines.contracts; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('pipelines') "
        "or m.split('.')[0] in ('pydantic', 'pandas', 'pyarrow', 'numpy'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '["pipelines", "pipelines.contracts", "pipelines.errors"]'


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2026-01-05", date(2026, 1, 5)),
        ("2024-02-29", date(2024, 2, 29)),
        ("2026-02-29", None),
        ("20260105", None),  # date.fromisoformat takes it
        ("2026-W02-1", None),  # so does this
        ("2026-1-5", None),  # strptime takes it
        ("2026-01-05garbage", None),
        ("2026-01-05\n", None),
        (" 2026-01-05", None),
        ("\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0665", None),  # Arabic-Indic digits
        (20260105, None),
        (None, None),
    ],
)
def test_a_day_is_exactly_yyyy_mm_dd(text, day):
    assert contracts.strict_day(text) == day


# A training request's bounds and the settings' defaults -----------------------------------


def test_the_settings_default_hyperparameters_are_within_the_contracts_bounds():
    defaults = Settings().project.model.hyperparameters
    assert contracts.check_hyperparameters(defaults) == defaults


def test_the_gate_judges_only_metrics_of_the_contract_within_their_bounds():
    for rule in Settings().project.model.gate:
        assert rule.metric in contracts.GATE_METRIC_RANGES
        given = {
            name: value
            for name, value in rule.model_dump().items()
            if name in contracts.gate_rule_bounds(rule.metric) and value is not None
        }
        assert contracts.check_gate_overrides({rule.metric: given}) == {rule.metric: given}


def test_every_bound_of_a_request_is_finite_and_every_number_schema_refuses_nan():
    import jsonschema

    for name, bound in contracts.HYPERPARAMETER_BOUNDS.items():
        assert math.isfinite(bound.maximum), name
        schema = bound.schema()
        assert not jsonschema.Draft202012Validator(schema).is_valid(float("nan")), name
        assert jsonschema.Draft202012Validator(schema).is_valid(bound.maximum), name


def test_the_params_defaults_are_a_valid_request():
    request = contracts.validate_training_request(contracts.TRAINING_PARAM_DEFAULTS)
    assert request.to_conf() == contracts.TRAINING_PARAM_DEFAULTS
    assert set(contracts.TRAINING_PARAM_SCHEMAS) == set(contracts.TRAINING_PARAM_DEFAULTS)
