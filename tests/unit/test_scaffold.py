"""`project init` infers a first project from a sample parquet file."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.demo import synthetic
from pipelines.errors import ConfigurationError
from pipelines.project import load_project
from pipelines.scaffold import init_project
from pipelines.settings import SyntheticSettings


def test_a_daily_snapshot_sample_becomes_a_snapshot_project(tmp_path):
    # Given a sample of the demo world's activity (one row per customer per day)
    frame = synthetic.activity(SyntheticSettings(customers=200), date(2026, 1, 1))
    sample = tmp_path / "activity.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sample)

    # When a project is scaffolded from it
    path = init_project("subscribers", sample, root=tmp_path / "projects")

    # Then it loads, keyed and dated as the sample is, its types, ranges and categories
    project = load_project(path)
    assert project.source.shape == "snapshot"
    assert (project.entity.column, project.entity.type) == ("customer_id", "int64")
    assert project.source.timestamp == "event_timestamp"
    plan = project.source.columns["plan"]
    assert plan.type == "string" and set(plan.categories or ()) <= {"basic", "standard", "premium"}
    tenure = project.source.columns["tenure_days"]
    assert tenure.type == "int64" and tenure.min == 0 and tenure.max >= frame["tenure_days"].max()
    assert path.read_text().startswith("# Scaffolded from activity.parquet")


def test_a_sample_of_events_with_text_ids_becomes_an_events_project(tmp_path):
    # Given purchases: several per customer a day, ids as zero-padded text
    sample = tmp_path / "purchases.parquet"
    pq.write_table(
        pa.table(
            {
                "customer_id": ["001", "001", "002", "003"],
                "bought_at": pa.array(
                    [date(1997, 1, 1), date(1997, 1, 1), date(1997, 1, 2), date(1997, 1, 2)],
                    pa.date32(),
                ),
                "amount": [10.5, 3.0, None, 7.25],
            }
        ),
        sample,
    )

    # When a project is scaffolded from it
    project = load_project(init_project("shop", sample, root=tmp_path / "projects"))

    # Then it is an events project with string ids, windowed features and a derived label
    assert project.source.shape == "events"
    assert project.entity.type == "string"
    assert project.aggregations is not None
    assert project.feature_columns["amount_sum_d30"] == "float64"
    assert project.label.derived is not None
    assert project.source.columns["amount"].max_null_share == 0.25


def test_init_never_overwrites_a_project(tmp_path):
    sample = tmp_path / "x.parquet"
    day = pa.array([date(2026, 1, 1)], pa.date32())
    pq.write_table(pa.table({"id": [1], "ts": day, "visits": [3]}), sample)
    init_project("mine", sample, root=tmp_path)

    with pytest.raises(ConfigurationError, match="exists"):
        init_project("mine", sample, root=tmp_path)


def test_a_sample_without_a_date_is_refused(tmp_path):
    sample = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": [1, 2]}), sample)

    with pytest.raises(ConfigurationError, match="no timestamp or date column"):
        init_project("mine", sample, root=tmp_path)
