"""The lake: partition paths, atomic writes, quarantine and partition listing."""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.io import lake

DAY = date(2026, 1, 2)


def table(values) -> pa.Table:
    return pa.table({"customer_id": pa.array(values, pa.int64())})


def leftovers(directory: Path) -> list[str]:
    """Temporary files a writer put aside and did not clean up."""
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".tmp"))


def test_partition_paths(tmp_path):
    assert (
        lake.partition_dir(tmp_path, "activity", DAY) == tmp_path / "activity" / "date=2026-01-02"
    )
    assert lake.partition_file(tmp_path, "activity", DAY) == (
        tmp_path / "activity" / "date=2026-01-02" / "part-0.parquet"
    )
    assert lake.partition_file(tmp_path, "labels", date(2026, 12, 31)).parent.name == (
        "date=2026-12-31"
    )


def test_write_table_atomic_creates_the_partition_directory(tmp_path):
    target = lake.partition_file(tmp_path, "activity", DAY)

    assert lake.write_table_atomic(table([1, 2]), target) == target

    assert pq.read_table(target).equals(table([1, 2]))
    assert os.listdir(target.parent) == ["part-0.parquet"]


def test_write_table_atomic_replaces_the_file_and_leaves_nothing_aside(tmp_path):
    target = lake.partition_file(tmp_path, "activity", DAY)
    lake.write_table_atomic(table([1, 2]), target)

    lake.write_table_atomic(table([3, 4, 5]), target)

    assert pq.read_table(target).equals(table([3, 4, 5]))
    assert os.listdir(target.parent) == ["part-0.parquet"]


def test_failed_write_keeps_the_previous_file_and_leaves_nothing_aside(tmp_path):
    target = lake.partition_file(tmp_path, "activity", DAY)
    lake.write_table_atomic(table([1, 2]), target)
    before = target.read_bytes()
    # Parquet has no type for month/day/nanosecond intervals: pq.write_table raises.
    unwritable = pa.table({"span": pa.array([(1, 2, 3)], pa.month_day_nano_interval())})

    with pytest.raises(pa.ArrowNotImplementedError):
        lake.write_table_atomic(unwritable, target)

    assert target.read_bytes() == before
    assert os.listdir(target.parent) == ["part-0.parquet"]


def test_failed_write_of_a_non_table_keeps_the_previous_file(tmp_path):
    target = lake.partition_file(tmp_path, "activity", DAY)
    lake.write_table_atomic(table([1, 2]), target)
    before = target.read_bytes()

    class NotATable:
        schema = pa.schema([("customer_id", pa.int64())])

    with pytest.raises(TypeError):
        lake.write_table_atomic(NotATable(), target)

    assert target.read_bytes() == before
    assert os.listdir(target.parent) == ["part-0.parquet"]


def test_failure_after_the_file_was_written_aside_removes_it(tmp_path, monkeypatch):
    target = lake.partition_file(tmp_path, "activity", DAY)
    lake.write_table_atomic(table([1, 2]), target)
    before = target.read_bytes()
    aside = []

    def failing_replace(source, destination):
        aside.append(Path(source))
        assert Path(source).exists() and Path(source).stat().st_size > 0
        raise OSError("disk went away")

    monkeypatch.setattr(lake.os, "replace", failing_replace)

    with pytest.raises(OSError, match="disk went away"):
        lake.write_table_atomic(table([3, 4, 5]), target)

    # The file put aside was a dot-name next to the target, and it is gone.
    assert aside[0].parent == target.parent
    assert aside[0].name.startswith(".part-0.parquet.")
    assert aside[0].name.endswith(".tmp")
    assert not aside[0].exists()
    assert target.read_bytes() == before
    assert leftovers(target.parent) == []


def test_write_bytes_atomic_failure_leaves_previous_bytes(tmp_path, monkeypatch):
    target = tmp_path / "zone" / "result.json"
    lake.write_bytes_atomic(b"old", target)

    def failing_replace(source, destination):
        raise OSError("boom")

    monkeypatch.setattr(lake.os, "replace", failing_replace)

    with pytest.raises(OSError, match="boom"):
        lake.write_bytes_atomic(b"new", target)

    assert target.read_bytes() == b"old"
    assert os.listdir(target.parent) == ["result.json"]


def test_write_json_atomic_serialises_datetimes(tmp_path):
    target = tmp_path / "doc.json"

    lake.write_json_atomic({"at": datetime(2026, 1, 2, 3, 4), "n": 1}, target)

    assert json.loads(target.read_text()) == {"at": "2026-01-02 03:04:00", "n": 1}


def test_quarantine_writes_the_result_and_moves_the_file(tmp_path):
    source = lake.partition_file(tmp_path / "raw", "activity", DAY)
    lake.write_table_atomic(table([1, 2]), source)
    content = source.read_bytes()
    quarantine_dir = lake.partition_dir(tmp_path / "quarantine", "activity", DAY)
    result = {"success": False, "failed": ["expect_x"], "at": datetime(2026, 1, 2)}

    assert lake.quarantine([source], quarantine_dir, result) == quarantine_dir

    assert not source.exists()
    assert (quarantine_dir / "part-0.parquet").read_bytes() == content
    written = json.loads((quarantine_dir / lake.RESULT_FILE).read_text())
    assert written == {"success": False, "failed": ["expect_x"], "at": "2026-01-02 00:00:00"}
    assert sorted(os.listdir(quarantine_dir)) == ["part-0.parquet", "validation_result.json"]


def test_quarantine_replaces_an_earlier_failed_attempt(tmp_path):
    quarantine_dir = tmp_path / "quarantine" / "activity" / "date=2026-01-02"
    for attempt in (1, 2):
        source = lake.partition_file(tmp_path / "raw", "activity", DAY)
        lake.write_table_atomic(table([attempt]), source)
        lake.quarantine([source], quarantine_dir, {"attempt": attempt})

    assert pq.read_table(quarantine_dir / "part-0.parquet").equals(table([2]))
    assert json.loads((quarantine_dir / lake.RESULT_FILE).read_text()) == {"attempt": 2}


def test_quarantine_moves_every_file_and_drops_an_earlier_attempts_files(tmp_path):
    quarantine_dir = lake.partition_dir(tmp_path / "quarantine", "activity", DAY)
    folder = lake.partition_dir(tmp_path / "raw", "activity", DAY)
    earlier = folder / "part-0.parquet"
    lake.write_table_atomic(table([1]), earlier)
    lake.quarantine([earlier], quarantine_dir, {"attempt": 1})
    halves = [folder / f"part-0000{n}-c0ffee.snappy.parquet" for n in (0, 1)]
    for n, half in enumerate(halves):
        lake.write_table_atomic(table([n]), half)

    lake.quarantine(halves, quarantine_dir, {"attempt": 2})

    assert lake.data_files(folder) == []
    assert [path.name for path in lake.data_files(quarantine_dir)] == [h.name for h in halves]
    assert json.loads((quarantine_dir / lake.RESULT_FILE).read_text()) == {"attempt": 2}


def test_data_files_are_the_parquet_files_not_hidden_or_underscored(tmp_path):
    folder = lake.partition_dir(tmp_path, "activity", DAY)
    for name in ("part-00001-x.snappy.parquet", "part-0.parquet", ".part-2.parquet.a.tmp"):
        lake.write_bytes_atomic(b"x", folder / name)
    for name in ("_SUCCESS", "_temporary.parquet", "notes.txt"):
        (folder / name).write_text("")
    (folder / "nested.parquet").mkdir()

    assert [path.name for path in lake.data_files(folder)] == [
        "part-0.parquet",
        "part-00001-x.snappy.parquet",
    ]
    assert lake.data_files(tmp_path / "missing") == []


def test_quarantine_of_a_missing_file_still_records_the_result(tmp_path):
    missing = tmp_path / "raw" / "activity" / "date=2026-01-02" / "part-0.parquet"
    quarantine_dir = tmp_path / "quarantine"

    lake.quarantine([missing], quarantine_dir, {"success": False})

    assert os.listdir(quarantine_dir) == ["validation_result.json"]


def test_partition_days_lists_only_days_with_a_data_file(tmp_path):
    for day in (date(2026, 1, 3), date(2026, 1, 1)):
        lake.write_table_atomic(table([1]), lake.partition_file(tmp_path, "activity", day))
    # A day whose directory exists but whose file never arrived.
    lake.partition_dir(tmp_path, "activity", date(2026, 1, 2)).mkdir(parents=True)
    # A day with only a write in progress (a dot-name put aside).
    in_progress = lake.partition_dir(tmp_path, "activity", date(2026, 1, 4))
    in_progress.mkdir(parents=True)
    (in_progress / ".part-0.parquet.abc.tmp").write_bytes(b"partial")
    # Things that are not partitions at all.
    (tmp_path / "activity" / "_SUCCESS").write_text("")
    (tmp_path / "activity" / "scratch").mkdir()
    # Another dataset does not leak in.
    lake.write_table_atomic(table([1]), lake.partition_file(tmp_path, "labels", date(2026, 1, 5)))

    assert lake.partition_days(tmp_path, "activity") == [date(2026, 1, 1), date(2026, 1, 3)]
    assert lake.partition_days(tmp_path, "labels") == [date(2026, 1, 5)]


def test_partition_days_of_a_missing_dataset_is_empty(tmp_path):
    assert lake.partition_days(tmp_path, "activity") == []
