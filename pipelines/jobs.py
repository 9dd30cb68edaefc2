"""Entry points with plain, JSON-friendly arguments: what DAG tasks and the CLI call.

Each job loads the settings from the environment, runs one stage, and returns
a small dict or string that fits in an XCom.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from pipelines import features, synthetic, validate
from pipelines.settings import load_settings


def _day(value: str | date | datetime) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value[:10])


def _instant(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def check_landed(day: str | date | datetime) -> str:
    """Path of the day's landed raw partition; `NotLandedError` if it is not there."""
    return str(validate.raw_partition(load_settings(), _day(day)))


def validate_partition(day: str | date | datetime) -> dict[str, Any]:
    """Run the validation gate on a day's raw partition (quarantines it on failure)."""
    return asdict(validate.validate_partition(load_settings(), _day(day)))


def publish_partition(day: str | date | datetime) -> str:
    """Publish a day's staged partition into the validated zone."""
    return str(validate.publish_partition(load_settings(), _day(day)))


def materialize(interval_start: str | datetime, interval_end: str | datetime) -> dict[str, Any]:
    """Apply the Feast repo, then materialize the run's window into the online store."""
    settings = load_settings()
    store = features.apply_repo(settings)
    start, end = features.materialization_window(
        settings, _instant(interval_start), _instant(interval_end)
    )
    return asdict(features.materialize_window(settings, start, end, store))


def generate(
    start: str | date | None = None,
    days: int | None = None,
    fault: str | None = None,
) -> list[str]:
    """Land generated raw partitions; `fault` (a `synthetic.Fault` value) applies to each day."""
    settings = load_settings()
    cfg = settings.synthetic
    first = _day(start) if start else cfg.start_date
    count = days if days is not None else cfg.days
    injected = synthetic.Fault(fault) if fault else None
    landed = []
    for offset in range(count):
        day = date.fromordinal(first.toordinal() + offset)
        path = synthetic.land_day(settings, day, injected)
        landed.append(str(path) if path else f"{day.isoformat()}: not landed")
    return landed
