"""The data contract derived from a project: the Arrow schema and the GE suites."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from pipelines.ingest import contract, validation
from pipelines.io import expectations
from pipelines.project import PROJECTS_ROOT, load_project
from pipelines.settings import PROJECT_ROOT, Settings

FIXTURES = PROJECT_ROOT / "tests" / "fixtures"


def _rules(expectation_list):
    return [(item["type"], item["kwargs"]) for item in expectation_list]


@pytest.mark.parametrize(
    ("suite", "render"),
    [
        ("activity_partition", contract.raw_partition_expectations),
        ("training_set", contract.training_set_expectations),
    ],
)
def test_the_demo_suites_are_the_ones_committed_before_projects(suite, render):
    # Given the suites as they were written by hand before projects existed
    committed = json.loads((FIXTURES / f"{suite}_suite_before_projects.json").read_text())

    # When the demo project's suites are derived, then they hold the same expectations
    assert _rules(render(load_project("demo"))) == _rules(committed["expectations"])


def test_rendering_twice_gives_the_same_bytes_and_the_context_holds_the_suites(settings):
    # Given the project's suites rendered once
    first = {path: path.read_bytes() for path in expectations.render_suites(settings)}

    # When they are rendered again, then nothing changes
    assert {path: path.read_bytes() for path in expectations.render_suites(settings)} == first
    # And the GE context serves them, with columns in the contract's order
    context = expectations.gx_context(settings)
    suite = context.suites.get(settings.project.raw_suite)
    (column_set,) = [
        e.column_set
        for e in suite.expectations
        if e.expectation_type == "expect_table_columns_to_match_set"
    ]
    assert column_set == contract.arrow_schema(settings.project).names


def _other_project(tmp_path: Path) -> Path:
    """A project unlike the demo: string ids, a bool and a timestamp column, its own names."""
    document = yaml.safe_load((PROJECTS_ROOT / "demo" / "project.yaml").read_text())
    document["name"] = "members"
    document["entity"] = {"name": "member", "column": "member_id", "type": "string"}
    document["source"]["dataset"] = "visits"
    document["source"]["feature_view"] = "member_visits"
    document["source"]["columns"] = {
        "visits": {"type": "int64", "min": 0},
        "is_premium": {"type": "bool"},
        "joined_at": {"type": "timestamp", "max_null_share": 0.5},
    }
    document["model"]["name"] = "lapse"
    document["model"]["feature_service"] = "lapse_v1"
    path = tmp_path / "members" / "project.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path.parent


def test_another_project_gets_its_own_schema_and_a_suite_that_judges_its_data(tmp_path):
    # Given a second project with string ids, bool and timestamp columns
    settings = Settings(state_root=tmp_path / "state", project=_other_project(tmp_path))
    day = datetime(2026, 3, 1, 12, tzinfo=UTC)

    # Then its published schema has the declared types
    assert contract.arrow_schema(settings.project) == pa.schema(
        [
            ("member_id", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("visits", pa.int64()),
            ("is_premium", pa.bool_()),
            ("joined_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    frame = pa.table(
        {
            "member_id": ["a", "b"],
            "event_timestamp": pa.array([day, day], pa.timestamp("us", tz="UTC")),
            "visits": [3, 0],
            "is_premium": [True, False],
            "joined_at": pa.array([day, None], pa.timestamp("us", tz="UTC")),
        }
    ).to_pandas()
    parameters = validation.expectation_parameters(settings, day.date())
    context = expectations.gx_context(settings)

    # When its suite judges a good partition and one with a repeated id and negative visits
    good = validation.run_checkpoint(context, "visits_partition", frame, parameters)
    bad_frame = frame.assign(member_id=["a", "a"], visits=[3, -1])
    bad = validation.run_checkpoint(context, "visits_partition", bad_frame, parameters)

    # Then the good one passes and the bad one fails naming both columns
    assert good["success"], validation.failed_expectations(good)
    failed = {failure.column for failure in validation.failed_expectations(bad)}
    assert failed == {"member_id", "visits"}


def test_a_bool_column_is_conformed_from_booleans_only():
    # Given a contract with a bool column, when a file holds it as bool or as text
    schema = pa.schema([("flag", pa.bool_())])
    as_bool = pa.table({"flag": [True, None]})
    as_text = pa.table({"flag": ["yes", "no"]})

    # Then booleans pass and text is refused naming the column
    assert validation.conform.conform(as_bool, schema, "UTC").column("flag").type == pa.bool_()
    with pytest.raises(Exception, match="column 'flag' is string; the contract needs bool"):
        validation.conform.conform(as_text, schema, "UTC")
    assert pd.isna(as_bool.column("flag").to_pylist()[1])
