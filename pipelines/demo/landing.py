"""Landing generated nights into the raw zone (the CLI's `generate`)."""

from __future__ import annotations

from datetime import date

from pipelines import contracts
from pipelines.settings import load_settings


def generate(
    start: str | date | None = None,
    days: int | None = None,
    fault: str | None = None,
) -> list[str]:
    """Land generated raw partitions; `fault` (a `synthetic.Fault` value) applies to each day."""
    from pipelines.demo import synthetic

    settings = load_settings()
    cfg = settings.synthetic
    first = contracts.as_night(start) if start else cfg.start_date
    count = days if days is not None else cfg.days
    injected = synthetic.Fault(fault) if fault else None
    landed = []
    for offset in range(count):
        day = date.fromordinal(first.toordinal() + offset)
        path = synthetic.land_day(settings, day, injected)
        landed.append(str(path) if path else f"{day.isoformat()}: not landed")
    return landed
