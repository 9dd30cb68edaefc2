"""The lake's zones (raw, validated, quarantine), partition paths and atomic writes.

A partition is one directory ``<zone>/<dataset>/date=YYYY-MM-DD/``. In the raw
zone it holds whatever parquet files the lander wrote (any names, e.g. Spark's
``part-00000-<uuid>.snappy.parquet``); the gate publishes them as one file,
``part-0.parquet``. Names starting with ``.`` or ``_`` are not data (a write in
progress, ``_SUCCESS``), as for Spark, pyarrow and dask. Our writers put a file
aside under a dot-name and rename it into place, so a reader sees either the
previous file or the new one, whole, never a part.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

PART_FILE = "part-0.parquet"


RESULT_FILE = "validation_result.json"


def partition_dir(zone_root: Path, dataset: str, day: date) -> Path:
    """Directory of one day's partition of a dataset in a zone."""
    return zone_root / dataset / f"date={day.isoformat()}"


def partition_file(zone_root: Path, dataset: str, day: date) -> Path:
    """Parquet file of one day's partition of a dataset in a zone."""
    return partition_dir(zone_root, dataset, day) / PART_FILE


def data_files(directory: Path) -> list[Path]:
    """The parquet data files of a partition directory, by name (empty if it is missing)."""
    if not directory.is_dir():
        return []
    return sorted(
        path
        for path in directory.iterdir()
        if path.suffix == ".parquet" and path.name[0] not in "._" and path.is_file()
    )


def _aside(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")


def write_table_atomic(table: pa.Table, target: Path, row_group_rows: int | None = None) -> Path:
    """Write a parquet file aside, fsync it, then rename it over `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _aside(target)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_rows)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_bytes_atomic(payload: bytes, target: Path) -> Path:
    """Write bytes aside, then rename them over `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _aside(target)
    try:
        tmp.write_bytes(payload)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_json_atomic(document: Any, target: Path) -> Path:
    """Write a JSON document aside, then rename it over `target`."""
    text = json.dumps(document, indent=2, sort_keys=True, default=str)
    return write_bytes_atomic(text.encode(), target)


def quarantine(sources: list[Path], quarantine_dir: Path, result: dict[str, Any]) -> Path:
    """Move a failed partition's files into quarantine with its validation result beside them.

    The quarantine directory of a date holds the latest failed attempt only: the
    result is written first, so a crash never leaves a file without its reason.
    """
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    for earlier in data_files(quarantine_dir):
        earlier.unlink()
    write_json_atomic(result, quarantine_dir / RESULT_FILE)
    for source in sources:
        if source.exists():
            os.replace(source, quarantine_dir / source.name)
    return quarantine_dir


def partition_days(zone_root: Path, dataset: str) -> list[date]:
    """Days that have a partition with data files in a zone, sorted."""
    root = zone_root / dataset
    if not root.exists():
        return []
    days = [
        date.fromisoformat(child.name.removeprefix("date="))
        for child in root.iterdir()
        if child.name.startswith("date=") and data_files(child)
    ]
    return sorted(days)
