"""Timestamps without a time zone: wall times of the source's time zone, put on UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines.errors import ContractViolationError
from pipelines.ingest.conform import TIMESTAMP, conform_column


def _walls(*moments: datetime | None, unit: str = "us") -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(moments, pa.timestamp(unit))])


def _instants(*moments: datetime | None) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(moments, TIMESTAMP)])


@pytest.mark.parametrize(
    ("timezone", "winter", "summer"),
    [("UTC", 10, 10), ("Europe/Paris", 9, 8), ("America/New_York", 15, 14), ("Asia/Tokyo", 1, 1)],
)
def test_wall_times_are_the_instants_they_name_in_the_sources_time_zone(timezone, winter, summer):
    # Given 10:00 on a winter and a summer day, without a time zone, and a missing value
    walls = _walls(datetime(2026, 1, 15, 10), datetime(2026, 7, 15, 10), None)

    # When they are put on the contract's type, then they are those wall times in the zone
    conformed = conform_column("event_timestamp", walls, TIMESTAMP, timezone)

    assert conformed.equals(
        _instants(
            datetime(2026, 1, 15, winter, tzinfo=UTC),
            datetime(2026, 7, 15, summer, tzinfo=UTC),
            None,
        )
    )


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_wall_times_in_any_unit_down_to_a_microsecond_are_kept_whole(unit):
    instants = _instants(datetime(2026, 3, 1, 0, 0, 1, 5_000 if unit != "s" else 0, tzinfo=UTC))
    walls = pc.local_timestamp(instants.cast(pa.timestamp(unit, "Europe/Paris")))

    assert conform_column("joined_at", walls, TIMESTAMP, "Europe/Paris").equals(instants)


def test_wall_times_a_daylight_saving_change_skips_or_repeats_are_refused_naming_the_column():
    # Given Paris wall times: two the spring change skips, one the autumn change repeats
    walls = _walls(
        datetime(2026, 3, 29, 2, 30),
        datetime(2026, 3, 29, 2, 45),
        datetime(2026, 10, 25, 2, 30),
        datetime(2026, 6, 1, 12),
    )

    # When they are put on the contract's type, then one line says which and why
    with pytest.raises(ContractViolationError) as caught:
        conform_column("event_timestamp", walls, TIMESTAMP, "Europe/Paris")

    assert str(caught.value) == (
        "column 'event_timestamp' (timestamp[us]) holds wall times of Europe/Paris (the "
        "source's time zone) that name no single instant: 2 skipped when clocks go forward "
        "(e.g. 2026-03-29 02:30:00), 1 repeated when clocks go back (e.g. 2026-10-25 02:30:00); "
        "write it with its time zone"
    )


def test_wall_times_finer_than_a_microsecond_are_refused():
    walls = pc.add(_walls(datetime(2026, 1, 15, 10), unit="ns").cast(pa.int64()), 1).cast(
        pa.timestamp("ns")
    )

    with pytest.raises(ContractViolationError) as caught:
        conform_column("event_timestamp", walls, TIMESTAMP, "UTC")
    assert "column 'event_timestamp' (timestamp[ns]) does not fit timestamp[us, tz=UTC]" in str(
        caught.value
    )
