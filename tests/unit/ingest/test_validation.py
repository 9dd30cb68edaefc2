"""The validation gate: pass → stage → publish; fail → quarantine with a readable reason."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.demo import synthetic
from pipelines.demo.synthetic import Fault
from pipelines.errors import (
    ContractViolationError,
    DataQualityError,
    NotLandedError,
    RerunError,
    UnreadablePartitionError,
    ValidationFailedError,
)
from pipelines.ingest import contract, publish, validation
from pipelines.io import lake
from pipelines.jobs import feature_pipeline
from pipelines.project import PROJECTS_ROOT
from pipelines.settings import load_settings

DAY = date(2026, 1, 1)

# Per fault: the (expectation, column) pair that must fail, and phrases the message must hold.
FAULT_REPORTS = {
    Fault.MISSING_COLUMN: (
        ("expect_table_columns_to_match_set", None),
        [
            "expect_table_columns_to_match_set: missing columns ['usage_minutes']",
            "expect_column_values_to_not_be_null on column 'usage_minutes': column is missing",
        ],
    ),
    Fault.WRONG_DTYPE: (None, ["column 'sessions' is string; the contract needs int64"]),
    Fault.NULLS: (
        ("expect_column_values_to_not_be_null", "usage_minutes"),
        ["expect_column_values_to_not_be_null on column 'usage_minutes'", "unexpected values"],
    ),
    Fault.OUT_OF_RANGE: (
        ("expect_column_values_to_be_between", "usage_minutes"),
        ["expect_column_values_to_be_between on column 'usage_minutes'", "unexpected values"],
    ),
    Fault.UNKNOWN_CATEGORY: (
        ("expect_column_values_to_be_in_set", "plan"),
        ["expect_column_values_to_be_in_set on column 'plan'", "platinum"],
    ),
    Fault.DUPLICATE_KEYS: (
        ("expect_column_values_to_be_unique", "customer_id"),
        ["expect_column_values_to_be_unique on column 'customer_id'"],
    ),
    Fault.TIMESTAMPS_OUTSIDE_DAY: (
        ("expect_column_values_to_be_between", "event_timestamp"),
        ["expect_column_values_to_be_between on column 'event_timestamp'", "2026-01-02T"],
    ),
    Fault.EMPTY: (
        ("expect_table_row_count_to_be_between", None),
        ["expect_table_row_count_to_be_between: observed 0"],
    ),
    Fault.CORRUPT_FILE: (None, ["cannot read parquet file", "Parquet magic bytes not found"]),
}
# The columns a single-column defect may make fail; MISSING_COLUMN and WRONG_DTYPE also
# fail the other expectations on their column, which is fine, but never another column.
FAULT_COLUMNS = {
    Fault.MISSING_COLUMN: {None, "usage_minutes"},
    Fault.NULLS: {"usage_minutes"},
    Fault.OUT_OF_RANGE: {"usage_minutes"},
    Fault.UNKNOWN_CATEGORY: {"plan"},
    Fault.DUPLICATE_KEYS: {"customer_id"},
    Fault.TIMESTAMPS_OUTSIDE_DAY: {"event_timestamp"},
    Fault.EMPTY: {None},
}
REJECTING_FAULTS = sorted(FAULT_REPORTS, key=list(Fault).index)


@pytest.fixture
def suite_columns(settings):
    return contract.arrow_schema(settings.project).names


def raw(settings, day=DAY):
    return lake.partition_file(settings.raw_root, "activity", day)


def staged(settings, day=DAY):
    return lake.partition_file(settings.lake_root / validation.STAGING_ZONE, "activity", day)


def validated(settings, day=DAY):
    return lake.partition_file(settings.validated_root, "activity", day)


def quarantined(settings, day=DAY):
    return lake.partition_dir(settings.quarantine_root, "activity", day)


def test_every_rejecting_fault_has_an_expected_report():
    assert set(REJECTING_FAULTS) == set(Fault) - {Fault.NOT_LANDED, Fault.EXTRA_COLUMN}


def test_clean_partition_passes_is_staged_and_published(settings, suite_columns):
    # Given a clean partition has landed
    landed = synthetic.land_day(settings, DAY)
    original = pq.read_table(landed)

    # When it goes through the gate
    outcome = validation.validate_partition(settings, DAY)

    # Then it passes and is staged with exactly the contract's columns, not yet published
    assert outcome.day == "2026-01-01"
    assert outcome.rows == settings.synthetic.customers
    assert outcome.extra_columns == []
    assert outcome.staged_path == str(staged(settings))
    assert pq.read_table(staged(settings)).equals(original.select(suite_columns))
    assert not validated(settings).exists()
    assert not settings.quarantine_root.exists()

    # When it is published
    published = publish.publish_partition(settings, DAY)

    # Then it moved from staging into the validated zone, byte for byte the staged table
    assert published == validated(settings)
    assert not staged(settings).exists()
    assert pq.read_table(published).equals(original.select(suite_columns))
    assert lake.partition_days(settings.validated_root, "activity") == [DAY]
    # And the raw file stays where it landed
    assert raw(settings).exists()


def test_publishing_without_a_staged_partition_names_the_task_to_clear(settings):
    # Given nothing was staged for the day, and nothing published
    # When publishing it
    # Then it fails at once (no retry can help) and says which task to clear instead
    with pytest.raises(RerunError, match="clear `validate` with its downstream tasks"):
        publish.publish_partition(settings, DAY)
    assert not settings.validated_root.exists()


def test_publishing_again_after_success_does_nothing(settings):
    # Given a day published (its staged file renamed into the validated zone)
    synthetic.land_day(settings, DAY)
    validation.validate_partition(settings, DAY)
    first = publish.publish_partition(settings, DAY)
    before = first.read_bytes()

    # When publish runs again: a cleared task, or a retry after a crash past the rename
    again = publish.publish_partition(settings, DAY)

    # Then it reports the published partition and changes nothing
    assert again == first and again.read_bytes() == before


def test_validating_a_quarantined_night_again_says_to_land_it_again(settings):
    # Given a day quarantined by the gate (its raw file moved away)
    synthetic.land_day(settings, DAY, Fault.NULLS)
    with pytest.raises(ValidationFailedError):
        validation.validate_partition(settings, DAY)

    # When the gate runs on it again (a cleared `validate`)
    with pytest.raises(DataQualityError, match="land a corrected partition") as caught:
        validation.validate_partition(settings, DAY)

    # Then it is a data-quality error (never retried), not a "not landed" one (retried)
    assert not isinstance(caught.value, NotLandedError)


def test_republishing_a_day_replaces_it(settings):
    # Given a day was published once
    synthetic.land_day(settings, DAY)
    validation.validate_partition(settings, DAY)
    publish.publish_partition(settings, DAY)
    first = validated(settings).read_bytes()

    # When it is validated and published again
    validation.validate_partition(settings, DAY)
    publish.publish_partition(settings, DAY)

    # Then the validated zone holds the one file, same content
    assert validated(settings).read_bytes() == first
    assert sorted(p.name for p in validated(settings).parent.iterdir()) == ["part-0.parquet"]


@pytest.mark.parametrize("fault", REJECTING_FAULTS, ids=str)
def test_faulty_partition_is_rejected_and_quarantined(settings, fault):
    # Given a good version of the day was already validated and published
    synthetic.land_day(settings, DAY)
    validation.validate_partition(settings, DAY)
    good = publish.publish_partition(settings, DAY).read_bytes()
    # And then a faulty version of the same day lands
    synthetic.land_day(settings, DAY, fault)
    bad = raw(settings).read_bytes()

    # When the gate runs
    expected_error = {
        Fault.CORRUPT_FILE: UnreadablePartitionError,
        Fault.WRONG_DTYPE: ContractViolationError,
    }.get(fault, ValidationFailedError)
    with pytest.raises(expected_error) as caught:
        validation.validate_partition(settings, DAY)

    # Then the error names the failed expectation and column, and where the file went
    message = str(caught.value)
    failure, phrases = FAULT_REPORTS[fault]
    for phrase in phrases:
        assert phrase in message, phrase
    assert "activity date=2026-01-01" in message
    assert str(quarantined(settings)) in message
    assert isinstance(caught.value, DataQualityError)

    # And the raw file moved into quarantine, its validation result beside it
    assert not raw(settings).exists()
    assert sorted(p.name for p in quarantined(settings).iterdir()) == [
        "part-0.parquet",
        "validation_result.json",
    ]
    assert (quarantined(settings) / "part-0.parquet").read_bytes() == bad
    result = json.loads((quarantined(settings) / lake.RESULT_FILE).read_text())
    assert result["success"] is False
    if failure is not None:
        failed = {(item["expectation"], item["column"]) for item in result["failed_expectations"]}
        assert failure in failed
        assert {column for _, column in failed} <= FAULT_COLUMNS[fault]
        assert f"failed {len(failed)} expectation(s)" in message
        assert str(settings.data_docs_index) in message
    else:
        assert phrases[0] in result["error"]

    # And nothing was staged, and the published good version survived untouched
    assert not staged(settings).exists()
    assert validated(settings).read_bytes() == good
    assert lake.partition_days(settings.validated_root, "activity") == [DAY]


def test_partition_that_never_landed_raises_not_landed(settings):
    # Given the day's activity never landed
    assert synthetic.land_day(settings, DAY, Fault.NOT_LANDED) is None

    # When the gate runs
    with pytest.raises(NotLandedError) as caught:
        validation.validate_partition(settings, DAY)

    # Then the error names the path it expected, and is retryable (not a data-quality error)
    assert str(raw(settings).parent) in str(caught.value)
    assert "date=2026-01-01" in str(caught.value)
    assert not isinstance(caught.value, DataQualityError)
    # And nothing was quarantined, staged or published
    assert not settings.quarantine_root.exists()
    assert not staged(settings).exists()
    assert not settings.validated_root.exists()


def test_extra_column_passes_and_is_dropped(settings, suite_columns):
    # Given a partition with a column the suite does not name
    synthetic.land_day(settings, DAY, Fault.EXTRA_COLUMN)
    assert "promo_code" in pq.read_schema(raw(settings)).names

    # When it goes through the gate and is published
    outcome = validation.validate_partition(settings, DAY)
    staged_columns = pq.read_schema(staged(settings)).names
    published = publish.publish_partition(settings, DAY)

    # Then it passed, the extra column is reported, and only the contract's columns go on
    assert outcome.extra_columns == ["promo_code"]
    assert outcome.rows == settings.synthetic.customers
    assert staged_columns == suite_columns
    assert pq.read_schema(published).names == suite_columns
    assert pq.read_schema(published).names == synthetic.ACTIVITY_SCHEMA.names
    assert not settings.quarantine_root.exists()


def test_data_docs_and_results_are_written_under_the_state_root(settings):
    # Given the committed GE context
    committed = sorted(
        p.relative_to(settings.gx_context_root) for p in settings.gx_context_root.rglob("*")
    )
    synthetic.land_day(settings, DAY)

    # When the gate runs
    outcome = validation.validate_partition(settings, DAY)

    # Then Data Docs and validation results live under the state root
    assert settings.data_docs_index.is_file()
    assert settings.data_docs_index.is_relative_to(settings.state_root)
    assert outcome.data_docs == str(settings.data_docs_index)
    assert "activity_partition" in settings.data_docs_index.read_text()
    results = list((settings.gx_state_root / "validations").rglob("*.json"))
    assert len(results) == 1
    # And the committed context gained no files
    assert committed == sorted(
        p.relative_to(settings.gx_context_root) for p in settings.gx_context_root.rglob("*")
    )


def test_data_docs_are_written_for_failing_runs_too(settings):
    # Given a faulty partition
    synthetic.land_day(settings, DAY, Fault.NULLS)

    # When the gate rejects it
    with pytest.raises(ValidationFailedError):
        validation.validate_partition(settings, DAY)

    # Then Data Docs exist to look at
    assert settings.data_docs_index.is_file()


def test_expectation_parameters_bound_the_partition_day(settings):
    # Given a partition day
    # When the suite's run-time parameters are computed
    parameters = validation.expectation_parameters(settings, DAY)

    # Then they bound that UTC day and carry the row-count limits
    assert parameters == {
        "partition_start": datetime(2026, 1, 1, tzinfo=UTC),
        "partition_end": datetime(2026, 1, 2, tzinfo=UTC),
        "min_rows": settings.validation.min_rows,
        "max_rows": settings.validation.max_rows,
    }


# failed_expectations on a hand-made describe_dict() -----------------------------------------


def _item(expectation, success=False, result=None, **kwargs):
    return {
        "expectation_type": expectation,
        "success": success,
        "kwargs": {"batch_id": "lake-activity", **kwargs},
        "result": result or {},
    }


def test_failed_expectations_reads_a_describe_dict():
    # Given a checkpoint result with passing and failing expectations of every shape
    result = {
        "success": False,
        "validation_results": [
            {
                "success": False,
                "expectations": [
                    _item("expect_column_values_to_not_be_null", success=True, column="plan"),
                    _item(
                        "expect_column_values_to_be_between",
                        column="usage_minutes",
                        min_value=0,
                    ),
                    _item(
                        "expect_table_columns_to_match_set",
                        result={
                            "observed_value": ["customer_id"],
                            "details": {"mismatched": {"missing": ["usage_minutes"]}},
                        },
                        column_set=["customer_id", "usage_minutes"],
                    ),
                    _item(
                        "expect_column_values_to_be_in_set",
                        result={
                            "unexpected_count": 3,
                            "unexpected_percent": 1.5,
                            "partial_unexpected_list": ["platinum", "gold", "platinum", "x"],
                        },
                        column="plan",
                    ),
                    _item(
                        "expect_compound_columns_to_be_unique",
                        result={"unexpected_count": 2, "unexpected_percent": 50.0},
                        column_list=["customer_id", "event_timestamp"],
                    ),
                    _item("expect_table_row_count_to_be_between", result={"observed_value": 0}),
                    {
                        **_item("expect_column_values_to_be_in_type_list", column="sessions"),
                        "exception_info": {
                            "raised_exception": True,
                            "exception_message": "types differ\nsecond line",
                        },
                    },
                    _item("expect_column_mean_to_be_between", column="sessions"),
                ],
            },
            {
                "success": False,
                "expectations": [
                    _item("expect_column_values_to_not_be_null", column="region"),
                ],
            },
        ],
    }

    # When its failures are listed
    failures = validation.failed_expectations(result)

    # Then every failed expectation appears once, in order, with its column and a reason
    assert [(f.expectation, f.column) for f in failures] == [
        ("expect_column_values_to_be_between", "usage_minutes"),
        ("expect_table_columns_to_match_set", None),
        ("expect_column_values_to_be_in_set", "plan"),
        ("expect_compound_columns_to_be_unique", "customer_id, event_timestamp"),
        ("expect_table_row_count_to_be_between", None),
        ("expect_column_values_to_be_in_type_list", "sessions"),
        ("expect_column_mean_to_be_between", "sessions"),
        ("expect_column_values_to_not_be_null", "region"),
    ]
    details = [f.detail for f in failures]
    assert details[0] == "column is missing"
    assert details[1] == "missing columns ['usage_minutes']"
    assert details[2] == "3 unexpected values (1.50% of rows), e.g. 'platinum', 'gold', 'platinum'"
    assert details[3] == "2 unexpected values (50.00% of rows)"
    assert details[4] == "observed 0"
    assert details[5] == "could not be evaluated (types differ)"
    assert details[6] == "failed"
    # A missing column only explains failures in the same validation result.
    assert details[7] == "failed"
    assert str(failures[0]) == (
        "expect_column_values_to_be_between on column 'usage_minutes': column is missing"
    )
    assert str(failures[4]) == "expect_table_row_count_to_be_between: observed 0"


def test_failed_expectations_of_a_passing_result_is_empty():
    # Given a result where everything passed
    result = {
        "success": True,
        "validation_results": [
            {"expectations": [_item("expect_column_values_to_not_be_null", True, column="plan")]}
        ],
    }

    # When its failures are listed, then there are none
    assert validation.failed_expectations(result) == []


# Landed files a hostile or careless writer produces, beyond the generator's faults.


def clean_frame(settings, day=DAY):
    return synthetic.activity(settings.synthetic, day)


def land(settings, table, name="part-0.parquet", day=DAY):
    path = lake.partition_dir(settings.raw_root, "activity", day) / name
    lake.write_table_atomic(table, path)
    return path


def contract_table(frame):
    return pa.Table.from_pandas(frame, schema=synthetic.ACTIVITY_SCHEMA, preserve_index=False)


def with_column(table, name, column):
    return table.set_column(table.schema.get_field_index(name), name, column)


def published_table(settings, day=DAY):
    validation.validate_partition(settings, day)
    return pq.read_table(publish.publish_partition(settings, day))


def test_lossless_variants_are_published_on_the_contracts_types(settings):
    # Given a day landed with types that differ from the contract without losing anything:
    # ms timestamps in another zone, int32 ids, whole floats for an integer, float32
    # charges, dictionary-encoded and large strings
    frame = clean_frame(settings)
    table = contract_table(frame)
    stamps = table.column("event_timestamp").cast(pa.timestamp("ms", tz="UTC"), safe=False)
    variant = with_column(table, "event_timestamp", stamps.cast(pa.timestamp("ms", "Asia/Tokyo")))
    variant = with_column(variant, "customer_id", variant.column("customer_id").cast(pa.int32()))
    variant = with_column(variant, "sessions", variant.column("sessions").cast(pa.float64()))
    variant = with_column(
        variant,
        "monthly_charge",
        pa.chunked_array([pa.array(frame["monthly_charge"].astype("float32"))]),
    )
    variant = with_column(variant, "plan", variant.column("plan").dictionary_encode())
    variant = with_column(variant, "region", variant.column("region").cast(pa.large_string()))
    land(settings, variant)

    # When it goes through the gate and is published
    published = published_table(settings)

    # Then the published file has exactly the contract's schema, the same instants and values
    assert published.schema.remove_metadata() == synthetic.ACTIVITY_SCHEMA
    expected = contract_table(frame).sort_by("customer_id")
    expected = with_column(expected, "event_timestamp", stamps.cast(pa.timestamp("us", "UTC")))
    expected = with_column(
        expected,
        "monthly_charge",
        pa.chunked_array([pa.array(frame["monthly_charge"].astype("float32").astype("float64"))]),
    )
    assert published.equals(expected.sort_by("customer_id"))


@pytest.mark.parametrize(
    ("column", "make", "phrase"),
    [
        (
            "event_timestamp",
            lambda t: pc.add(
                pc.multiply(t.column("event_timestamp").cast(pa.int64()), 1000), 1
            ).cast(pa.timestamp("ns")),
            "column 'event_timestamp' (timestamp[ns]) does not fit timestamp[us, tz=UTC]",
        ),
        (
            "event_timestamp",
            lambda t: pc.add(
                pc.multiply(t.column("event_timestamp").cast(pa.int64()), 1000), 1
            ).cast(pa.timestamp("ns", "UTC")),
            "column 'event_timestamp' (timestamp[ns, tz=UTC]) does not fit timestamp[us, tz=UTC]",
        ),
        (
            "sessions",
            lambda t: pc.add(t.column("sessions").cast(pa.float64()), 0.5),
            "column 'sessions' (double) does not fit int64 without loss",
        ),
        (
            "customer_id",
            lambda t: pa.array(np.full(t.num_rows, 2**63, dtype=np.uint64)),
            "column 'customer_id' (uint64) does not fit int64 without loss",
        ),
        (
            "plan",
            lambda t: pa.chunked_array([pa.array([b"basic"] * t.num_rows)]),
            "column 'plan' is binary; the contract needs string",
        ),
    ],
    ids=["naive-nanoseconds", "nanoseconds", "fractional-int", "beyond-int64", "binary-text"],
)
def test_lossy_or_ambiguous_types_are_refused_naming_the_column(settings, column, make, phrase):
    # Given a day landed with a column that cannot be put on the contract's type losslessly
    table = contract_table(clean_frame(settings))
    landed = land(settings, with_column(table, column, make(table)))

    # When the gate runs, then the partition is quarantined with one line naming the column
    with pytest.raises(ContractViolationError) as caught:
        validation.validate_partition(settings, DAY)
    message = str(caught.value)
    assert phrase in message and "\n" not in message
    assert str(quarantined(settings)) in message
    assert not landed.exists()
    assert not settings.validated_root.exists()


def _project_in(tmp_path, monkeypatch, timezone: str):
    """Settings of the demo's project, its source in another time zone."""
    document = yaml.safe_load((PROJECTS_ROOT / "demo" / "project.yaml").read_text())
    document["source"]["timezone"] = timezone
    path = tmp_path / "zoned" / "project.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("MLOPS_PROJECT", str(path))
    return load_settings()


@pytest.mark.parametrize("timezone", ["UTC", "America/New_York"])
def test_timestamps_without_a_time_zone_are_wall_times_of_the_sources_time_zone(
    settings, tmp_path, monkeypatch, timezone
):
    # Given a day landed as wall times of the project's time zone, without the zone (and
    # pandas metadata that says UTC whatever the zone: readers get the Arrow type)
    settings = _project_in(tmp_path, monkeypatch, timezone)
    table = contract_table(clean_frame(settings))
    stamps = table.column("event_timestamp")
    walls = pc.local_timestamp(stamps.cast(pa.timestamp("us", timezone)))
    land(settings, with_column(table, "event_timestamp", walls))
    assert str(pq.read_table(raw(settings)).to_pandas()["event_timestamp"].dt.tz) == "UTC"

    # When the gate runs, then the published instants are those the wall times name there
    published = published_table(settings)
    assert published.column("event_timestamp").equals(
        table.sort_by("customer_id")["event_timestamp"]
    )


def test_a_wall_time_a_daylight_saving_change_skips_refuses_the_partition(
    settings, tmp_path, monkeypatch
):
    # Given a Paris project, and a landed wall time that Paris skipped on 2026-03-29
    settings = _project_in(tmp_path, monkeypatch, "Europe/Paris")
    table = contract_table(clean_frame(settings))
    walls = pc.local_timestamp(
        table.column("event_timestamp").cast(pa.timestamp("us", "Europe/Paris"))
    )
    walls = pa.concat_arrays(
        [pa.array([datetime(2026, 3, 29, 2, 30)], pa.timestamp("us")), walls.combine_chunks()[1:]]
    )
    landed = land(settings, with_column(table, "event_timestamp", walls))

    # When the gate runs, then the partition is quarantined, the column and the zone named
    with pytest.raises(ContractViolationError) as caught:
        validation.validate_partition(settings, DAY)
    message = str(caught.value)
    assert "column 'event_timestamp' (timestamp[us]) holds wall times of Europe/Paris" in message
    assert "1 skipped when clocks go forward (e.g. 2026-03-29 02:30:00)" in message
    assert not landed.exists() and quarantined(settings).exists()


def test_a_partition_is_all_its_files_whatever_their_names(settings):
    # Given a day landed as two Spark-style halves (and a _SUCCESS marker)
    table = contract_table(clean_frame(settings))
    half = table.num_rows // 2
    land(settings, table.slice(0, half), "part-00000-5f1c.snappy.parquet")
    land(settings, table.slice(half), "part-00001-5f1c.snappy.parquet")
    (raw(settings).parent / "_SUCCESS").write_text("")

    # When it goes through the gate and is published
    outcome = validation.validate_partition(settings, DAY)
    published = pq.read_table(publish.publish_partition(settings, DAY))

    # Then every row of both files was validated and published, as one file
    assert outcome.rows == table.num_rows
    assert published.equals(table.sort_by("customer_id"))
    assert sorted(p.name for p in validated(settings).parent.iterdir()) == ["part-0.parquet"]


def test_a_bad_file_refuses_the_whole_partition(settings):
    # Given a good half and a half with an unknown category
    frame = clean_frame(settings)
    half = len(frame) // 2
    bad = frame.iloc[half:].copy()
    bad.loc[bad.index[0], "plan"] = "platinum"
    good_file = land(settings, contract_table(frame.iloc[:half]), "part-00000.parquet")
    bad_file = land(settings, contract_table(bad), "part-00001.parquet")

    # When the gate runs, then the partition is refused whole and both files are quarantined
    with pytest.raises(ValidationFailedError, match="column 'plan'"):
        validation.validate_partition(settings, DAY)
    assert not good_file.exists() and not bad_file.exists()
    assert [p.name for p in lake.data_files(quarantined(settings))] == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert not settings.validated_root.exists()


def test_files_that_disagree_on_columns_are_refused(settings):
    # Given two files of one day, one without a column the other has
    table = contract_table(clean_frame(settings))
    land(settings, table.slice(0, 10), "a.parquet")
    land(settings, table.slice(10).drop_columns(["sessions"]), "b.parquet")

    # When the gate runs, then the error names both files and the column
    with pytest.raises(
        ContractViolationError, match=r"b\.parquet and a\.parquet differ in columns 'sessions'"
    ):
        validation.validate_partition(settings, DAY)


def test_duplicate_column_names_give_one_line_naming_the_column(settings):
    # Given a file with the column `plan` twice
    table = contract_table(clean_frame(settings))
    land(settings, table.append_column("plan", table.column("plan")))

    # When the gate runs, then one short line names it (no Arrow schema dump)
    with pytest.raises(ContractViolationError) as caught:
        validation.validate_partition(settings, DAY)
    message = str(caught.value)
    assert "part-0.parquet: column 'plan' appears 2 times" in message
    assert "\n" not in message and "schema" not in message


def test_one_row_per_customer_per_day(settings):
    # Given a day where a customer has two snapshots at different times
    frame = clean_frame(settings)
    twice = frame.iloc[[0]].copy()
    twice["event_timestamp"] += pd.Timedelta(seconds=1)
    land(settings, contract_table(pd.concat([frame, twice], ignore_index=True)))

    # When the gate runs, then the partition is refused naming the entity column
    with pytest.raises(
        ValidationFailedError, match="expect_column_values_to_be_unique on column 'customer_id'"
    ):
        validation.validate_partition(settings, DAY)


def test_echoed_values_are_cut_with_their_length_and_escaped(settings):
    # Given a category 10 kB long, and one with a Cyrillic letter that looks Latin
    frame = clean_frame(settings)
    frame.loc[frame.index[0], "region"] = "x" * 10_000
    frame.loc[frame.index[1], "region"] = "\u0435u"  # a Cyrillic "e", then a Latin "u"
    land(settings, contract_table(frame))

    # When the gate refuses it
    with pytest.raises(ValidationFailedError) as caught:
        validation.validate_partition(settings, DAY)

    # Then the long value is cut and its length said, and the look-alike is escaped
    message = str(caught.value)
    assert "(10000 characters)" in message
    assert len(message) < 2_000
    assert "'\\u0435u'" in message and "'eu'" not in message


def test_a_partition_dated_in_the_future_is_refused(settings):
    # Given a day dated beyond today plus the tolerance (its rows inside that day)
    future = date(2099, 1, 1)
    frame = clean_frame(settings)
    frame["event_timestamp"] = frame["event_timestamp"] + pd.Timedelta(days=(future - DAY).days)
    landed = land(settings, contract_table(frame), day=future)

    # When the gate runs, then it is quarantined and says why and which setting allows more
    with pytest.raises(DataQualityError, match="is in the future") as caught:
        validation.validate_partition(settings, future)
    assert "MLOPS_VALIDATION__FUTURE_TOLERANCE" in str(caught.value)
    assert not landed.exists()
    assert not settings.validated_root.exists()


def test_the_future_tolerance_bounds_the_latest_night(settings):
    now = datetime(2026, 3, 10, 1, 30, tzinfo=UTC)
    # Yesterday and today pass with the default tolerance of one day ...
    validation.refuse_future_night(settings, date(2026, 3, 9), now)
    validation.refuse_future_night(settings, date(2026, 3, 10), now)
    # ... tomorrow does not.
    with pytest.raises(DataQualityError, match="date=2026-03-11 is in the future"):
        validation.refuse_future_night(settings, date(2026, 3, 11), now)


def test_materializing_a_night_in_the_future_is_refused(settings):
    # Given a night beyond today plus the tolerance
    # When its materialization is asked for, then it is refused before the online store
    with pytest.raises(DataQualityError, match="date=2099-01-01 is in the future"):
        feature_pipeline.materialize(date(2099, 1, 1))
    assert not (settings.feast_root / "online_store.db").exists()
