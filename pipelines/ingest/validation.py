"""Validation gate: run a raw partition through its Great Expectations checkpoint.

A partition is every parquet file in its folder, validated and published together or
refused whole. Its files are first put on the contract's types (`pipelines.ingest.conform`:
lossless casts only), so the suite checks exactly the bytes that are published. A
passing partition is staged (one file, sorted by entity) and then published
atomically into the validated zone, the only zone Feast reads. A failing, mis-dated or
unreadable partition is moved to quarantine with its result beside it, and the error
names every failed expectation and its column.

Extra columns the contract does not name are tolerated: they are reported in the
outcome and dropped, so downstream readers always see the contract.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import contracts, faults
from pipelines.contracts import ValidationOutcome
from pipelines.errors import (
    ContractViolationError,
    DataQualityError,
    NotLandedError,
    UnreadablePartitionError,
    ValidationFailedError,
    brief,
    shown,
)
from pipelines.ingest import conform, contract
from pipelines.io import lake
from pipelines.io.expectations import gx_context
from pipelines.settings import Settings

log = logging.getLogger(__name__)


STAGING_ZONE = "staging"


ROW_GROUP_ROWS = 32_768


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation that did not hold, in words a data engineer can act on."""

    expectation: str
    column: str | None
    detail: str

    def __str__(self) -> str:
        where = f" on column '{self.column}'" if self.column else ""
        return f"{self.expectation}{where}: {self.detail}"


def raw_files(settings: Settings, day: date) -> list[Path]:
    """The landed raw files of a day, or a clear error if none landed."""
    folder = lake.partition_dir(settings.raw_root, settings.project.source.dataset, day)
    files = lake.data_files(folder)
    quarantined = quarantine_result(settings, day)
    if not files and quarantined.exists():
        raise DataQualityError(
            f"raw partition {settings.project.source.dataset} date={day.isoformat()} failed "
            f"validation and was quarantined (see {quarantined}): land a corrected partition, "
            "then trigger the night again"
        )
    if not files:
        raise NotLandedError(
            f"raw partition {settings.project.source.dataset} date={day.isoformat()} "
            f"has not landed: expected parquet files in {folder}"
        )
    return files


def refuse_future_night(settings: Settings, day: date, now: datetime | None = None) -> None:
    """Raise if the day ends later than now plus the tolerance: its rows would be dated in the
    future, and would win the online store's newest-value rule for good."""
    latest = (now or datetime.now(UTC)) + settings.validation.future_tolerance
    day_end = contracts.midnight_after(day)
    if day_end > latest:
        raise DataQualityError(
            f"{settings.project.source.dataset} date={day.isoformat()} is in the future: its day "
            f"ends {day_end:%Y-%m-%d %H:%M} UTC, later than now plus "
            f"{settings.validation.future_tolerance} (MLOPS_VALIDATION__FUTURE_TOLERANCE)"
        )


def _staging_file(settings: Settings, day: date) -> Path:
    return lake.partition_file(
        settings.lake_root / STAGING_ZONE, settings.project.source.dataset, day
    )


def quarantine_result(settings: Settings, day: date) -> Path:
    """The validation result of the night's latest quarantined partition (if one was)."""
    return _quarantine_dir(settings, day) / lake.RESULT_FILE


def _quarantine_dir(settings: Settings, day: date) -> Path:
    return lake.partition_dir(settings.quarantine_root, settings.project.source.dataset, day)


def expectation_parameters(settings: Settings, day: date) -> dict[str, Any]:
    """Run-time parameters of the suite: the partition's day bounds and row-count bounds."""
    start, end = contracts.night_interval(day)
    return {
        "partition_start": start,
        "partition_end": end,
        "min_rows": settings.validation.min_rows,
        "max_rows": settings.validation.max_rows,
    }


def run_checkpoint(
    context: Any, checkpoint: str, frame: pd.DataFrame, parameters: dict[str, Any]
) -> dict[str, Any]:
    """Run a checkpoint on an in-memory frame; its result as a JSON-friendly dict."""
    run = context.checkpoints.get(checkpoint).run(
        batch_parameters={"dataframe": frame}, expectation_parameters=parameters
    )
    result = run.describe_dict()
    # describe_dict() drops errors GE raised while computing a metric; keep their message.
    for described, suite_result in zip(
        result["validation_results"], run.run_results.values(), strict=True
    ):
        for item, outcome in zip(described["expectations"], suite_result.results, strict=True):
            message = _nested_exception_message(outcome.exception_info or {})
            if not item["success"] and message and "exception_info" not in item:
                item["exception_info"] = {"raised_exception": True, "exception_message": message}
    return result


def _nested_exception_message(info: dict[str, Any]) -> str | None:
    nested = [value.get("exception_message") for value in info.values() if isinstance(value, dict)]
    return next((m for m in [info.get("exception_message"), *nested] if m), None)


def validate_training_set(settings: Settings, frame: pd.DataFrame) -> dict[str, Any]:
    """Check a point-in-time training set before any model sees it; raise naming failures."""
    training = settings.training
    checkpoint = settings.project.training_suite
    result = run_checkpoint(
        gx_context(settings),
        checkpoint,
        frame,
        {
            "min_rows": training.min_rows,
            "min_label_share": training.min_label_share,
            "max_label_share": training.max_label_share,
            "min_feature_coverage": training.min_feature_coverage,
        },
    )
    if not result["success"]:
        failures = failed_expectations(result)
        listing = "\n".join(f"  - {failure}" for failure in failures)
        raise ValidationFailedError(
            f"training set of {len(frame)} rows failed {len(failures)} expectation(s) of "
            f"checkpoint '{checkpoint}':\n{listing}\nData Docs: {settings.data_docs_index}"
        )
    return result


def failed_expectations(result: dict[str, Any]) -> list[FailedExpectation]:
    """The failed expectations of a checkpoint result (its `describe_dict()`)."""
    failures = []
    for validation in result["validation_results"]:
        items = validation["expectations"]
        missing = _missing_columns(items)
        for item in items:
            if item["success"]:
                continue
            kwargs = item.get("kwargs", {})
            column = kwargs.get("column") or ", ".join(kwargs.get("column_list", [])) or None
            detail = "column is missing" if column in missing else _detail(item)
            failures.append(FailedExpectation(item["expectation_type"], column, detail))
    return failures


def _missing_columns(items: list[dict[str, Any]]) -> set[str]:
    for item in items:
        if item["expectation_type"] == "expect_table_columns_to_match_set":
            mismatched = (item.get("result") or {}).get("details", {}).get("mismatched", {})
            return set(mismatched.get("missing", []))
    return set()


def _detail(item: dict[str, Any]) -> str:
    outcome = item.get("result") or {}
    mismatched = outcome.get("details", {}).get("mismatched")
    if mismatched:
        return ", ".join(f"{kind} columns {sorted(cols)}" for kind, cols in mismatched.items())
    exception = item.get("exception_info") or {}
    if exception.get("exception_message"):
        message = str(exception["exception_message"]).strip().splitlines()
        return f"could not be evaluated ({brief(message[0]) if message else 'error'})"
    if "unexpected_count" in outcome:
        sample = outcome.get("partial_unexpected_list") or []
        examples = f", e.g. {', '.join(shown(value) for value in sample[:3])}" if sample else ""
        return (
            f"{outcome['unexpected_count']} unexpected values "
            f"({outcome.get('unexpected_percent', 0):.2f}% of rows){examples}"
        )
    if "observed_value" in outcome:
        observed = outcome["observed_value"]
        return (
            f"observed {shown(observed.item() if isinstance(observed, np.generic) else observed)}"
        )
    return "failed"


def _read_file(path: Path, schema: pa.Schema, timezone: str) -> tuple[pa.Table, list[str]]:
    """One landed file on the contract's types (wall times read in `timezone`), and the
    columns it has beyond them."""
    try:
        names = pq.read_schema(path).names
        conform.refuse_repeated_columns(names)  # before reading: Arrow's own error dumps the schema
        table = conform.conform(pq.read_table(path), schema, timezone)
    except ContractViolationError as error:
        raise ContractViolationError(f"{path.name}: {error}") from error
    except (pa.ArrowException, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnreadablePartitionError(
            f"cannot read parquet file {path.name}: {brief(reason)}"
        ) from error
    return table, [name for name in names if name not in schema.names]


def read_partition(
    files: list[Path], schema: pa.Schema, timezone: str
) -> tuple[pa.Table, list[str]]:
    """All files of a partition as one table on the contract's types (wall times read in
    `timezone`), and the extra columns.

    Files must agree on which contract columns they hold, or the partition is refused.
    """
    tables: list[pa.Table] = []
    extra: set[str] = set()
    for path in files:
        table, beyond = _read_file(path, schema, timezone)
        if tables and table.schema.names != tables[0].schema.names:
            differing = sorted(set(table.schema.names) ^ set(tables[0].schema.names))
            raise ContractViolationError(
                f"{path.name} and {files[0].name} differ in columns "
                f"{', '.join(shown(name) for name in differing)}"
            )
        tables.append(table)
        extra.update(beyond)
    return pa.concat_tables(tables), sorted(extra)


def validate_partition(
    settings: Settings, day: date, now: datetime | None = None
) -> ValidationOutcome:
    """Validate a landed raw partition; stage it if it passes, quarantine it if not."""
    files = raw_files(settings, day)
    project = settings.project
    label = f"{project.source.dataset} date={day.isoformat()}"
    quarantine_dir = _quarantine_dir(settings, day)
    context = gx_context(settings)
    schema = contract.arrow_schema(project)
    try:
        refuse_future_night(settings, day, now)
        table, extra = read_partition(files, schema, project.source.timezone)
    except DataQualityError as error:
        target = lake.quarantine(files, quarantine_dir, {"success": False, "error": str(error)})
        raise type(error)(f"{label} quarantined to {target}: {error}") from error

    result = run_checkpoint(
        context, project.raw_suite, table.to_pandas(), expectation_parameters(settings, day)
    )
    docs = str(settings.data_docs_index)
    if not result["success"]:
        failures = failed_expectations(result)
        result["failed_expectations"] = [asdict(failure) for failure in failures]
        target = lake.quarantine(files, quarantine_dir, result)
        listing = "\n".join(f"  - {failure}" for failure in failures)
        raise ValidationFailedError(
            f"{label} failed {len(failures)} expectation(s) of suite "
            f"'{project.raw_suite}' and was quarantined to {target}:\n{listing}\n"
            f"Data Docs: {docs}"
        )

    if extra:
        log.warning("%s: dropping columns the suite does not name: %s", label, extra)
    # Sorted by entity in small row groups, so a reader of a range of entities (a
    # scoring shard) skips the rest of the file using the row-group statistics.
    ordered = table.sort_by(project.entity.column)
    staged = lake.write_table_atomic(ordered, _staging_file(settings, day), ROW_GROUP_ROWS)
    faults.crash_here(settings, "ingest.staged")
    return ValidationOutcome(
        day=day.isoformat(),
        rows=table.num_rows,
        staged_path=str(staged),
        extra_columns=extra,
        data_docs=docs,
    )
