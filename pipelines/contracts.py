"""What the DAG files and the pipeline share, in the standard library only.

DAG files import this module and Airflow, nothing else, so the dag-processor parses
them in a fraction of a second. It holds the asset names, the partition key of a
night, the nightly schedule's settings (read from the same ``MLOPS_SCHEDULE__*``
variables as `pipelines.settings`), and the errors no retry can fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta

from pipelines import errors

# Assets: each event carries the night it is about as its partition key.
FEATURES = "features"
PREDICTIONS = "predictions"
RETRAIN_REQUEST = "retrain_request"
MODEL_PROMOTED = "model_promoted"

# A night's partition key is its calendar day in UTC: the key of `features`,
# `predictions` and every nightly run (and what the UI shows beside the run).
PARTITION_KEY_FORMAT = "%Y-%m-%d"
SCHEDULE_TIMEZONE = "UTC"
NIGHTLY_CRON = "0 0 * * *"
WEEKLY_TRAINING_CRON = "0 3 * * 0"

# The base class of every error retrying cannot fix, by the dotted name retry policies take.
PERMANENT_ERROR = f"{errors.__name__}.{errors.PermanentError.__name__}"
# A `training` run started by a drift alarm: one run id per night, so a rerun of the night
# starts no second one.
RETRAIN_RUN_PREFIX = "retrain_request__"
# Longest reason a `training` run takes (its form's `reason`).
MAX_REASON_CHARS = 500

SCHEDULE_ENV_PREFIX = "MLOPS_SCHEDULE__"


@dataclass(frozen=True)
class ScheduleSettings:
    """When the nightly DAGs run: `Settings.schedule`, also read at DAG-parse time."""

    # First night the schedule processes; empty: the latest complete night when the DAG is
    # first scheduled. Older nights load with `airflow backfill create`.
    start_date: date | None = None
    # How often `check_landed` looks for a night's partition, and how long it waits (seconds).
    landing_poke_interval_seconds: int = 300
    landing_timeout_seconds: int = 6 * 3600

    def __post_init__(self) -> None:
        if self.landing_poke_interval_seconds < 1 or self.landing_timeout_seconds < 1:
            raise ValueError("the landing poke interval and timeout must be at least 1 second")


def partition_key(day: date) -> str:
    """The partition key of a night."""
    return day.strftime(PARTITION_KEY_FORMAT)


def night(key: str | None) -> date:
    """The night a partition key names; a run without one gets an error saying what to do."""
    if not key:
        raise errors.MissingPartitionKeyError(
            "this run has no partition key: trigger it with the night it is about as its "
            "partition key (YYYY-MM-DD), or let the `features` asset trigger it"
        )
    try:
        return datetime.strptime(key, PARTITION_KEY_FORMAT).date()
    except ValueError:
        raise errors.MissingPartitionKeyError(
            f"partition key {key[:40]!r} is not a night: use YYYY-MM-DD"
        ) from None


def midnight_after(day: date) -> datetime:
    """The time rule: a night's features and labels are as of the midnight (UTC) after it."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def first_scheduled_run(schedule: ScheduleSettings) -> datetime | None:
    """Airflow `start_date` of the nightly DAG: the run at the midnight after the first night."""
    return midnight_after(schedule.start_date) if schedule.start_date else None


def retrain_run_id(night: str) -> str:
    """The id of the `training` run a drift alarm on `night` (a partition key) starts."""
    return f"{RETRAIN_RUN_PREFIX}{night}"


# How a variable's text becomes each schedule field (what pydantic does for `Settings`).
_SCHEDULE_PARSERS = {
    "start_date": date.fromisoformat,
    "landing_poke_interval_seconds": int,
    "landing_timeout_seconds": int,
}


def schedule_settings(environ: Mapping[str, str] = os.environ) -> ScheduleSettings:
    """The schedule settings from ``MLOPS_SCHEDULE__<FIELD>`` variables (as `Settings` reads)."""
    names = {
        f"{SCHEDULE_ENV_PREFIX}{item.name.upper()}": item.name for item in fields(ScheduleSettings)
    }
    # Like pydantic-settings, variable names are case-insensitive.
    given = {key.upper(): value for key, value in environ.items()}
    unknown = sorted(key for key in given if key.startswith(SCHEDULE_ENV_PREFIX))
    unknown = [key for key in unknown if key not in names]
    if unknown:
        raise ValueError(f"unknown schedule settings: {unknown}; known: {sorted(names)}")
    values = {}
    for variable, name in names.items():
        if given.get(variable):  # like pydantic-settings here, empty means unset
            try:
                values[name] = _SCHEDULE_PARSERS[name](given[variable])
            except ValueError as error:
                raise ValueError(f"{variable}: {error}") from None
    return ScheduleSettings(**values)
