"""Land CDNOW's purchases as the raw zone expects them: one parquet partition per day.

The data ships inside the `Lifetimes` package (`lifetimes/datasets/CDNOW_master.txt`:
customer id, date, number of CDs, dollar value); the package is never imported, only its
data file read. Each purchase is stamped at the midnight (UTC) starting its day.

    MLOPS_PROJECT=cdnow .venv/bin/python projects/cdnow/land.py [--until 1997-03-01]
"""

from __future__ import annotations

import argparse
from datetime import date
from importlib.metadata import distribution
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipelines.io import lake
from pipelines.settings import Settings, load_settings

DATA_FILE = "lifetimes/datasets/CDNOW_master.txt"


def purchases() -> pd.DataFrame:
    """Every purchase of the dataset, ids as shipped (zero-padded text), in file order."""
    path = Path(str(distribution("Lifetimes").locate_file(DATA_FILE)))
    frame = pd.read_csv(path, sep=r"\s+", dtype={"customer_id": str, "date": str})
    stamped = pd.to_datetime(frame["date"], format="%Y%m%d").dt.tz_localize("UTC")
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "event_timestamp": stamped.astype("datetime64[us, UTC]"),
            "number_of_cds": frame["number_of_cds"].astype("int64"),
            "dollar_value": frame["dollar_value"].astype("float64"),
        }
    )


def land(settings: Settings, until: date | None = None) -> list[date]:
    """Write each day's purchases (up to `until`) under the raw zone; the landed days."""
    frame = purchases()
    days = frame["event_timestamp"].dt.date
    landed = []
    for day, rows in frame.groupby(days, sort=True):
        if until is not None and day > until:
            break
        target = lake.partition_file(settings.raw_root, settings.project.source.dataset, day)
        lake.write_table_atomic(pa.Table.from_pandas(rows, preserve_index=False), target)
        landed.append(day)
    return landed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--until", type=date.fromisoformat, help="last day to land")
    days = land(load_settings(), parser.parse_args().until)
    print(f"landed {len(days)} days of purchases, {days[0]} to {days[-1]}")


if __name__ == "__main__":
    main()
