"""Generated worlds the tests and benchmarks share: nights landed straight into the
validated zone, labelled training frames (the demo's world, without its gate), and the
demo's project with text ids."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import yaml

from pipelines import contracts
from pipelines.demo import synthetic
from pipelines.io import lake
from pipelines.project import PROJECTS_ROOT
from pipelines.settings import Settings


def text_id_project(folder: Path) -> Path:
    """A project folder: the demo's project, but for customer ids that are text (the
    generator lands them zero-padded)."""
    document = yaml.safe_load((PROJECTS_ROOT / "demo" / "project.yaml").read_text())
    document["name"] = "demo_text_ids"
    entity = {key: value for key, value in document["entity"].items() if key != "min"}
    document["entity"] = {**entity, "type": "string"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "project.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def land_validated(settings: Settings, day: date, labels: bool = True) -> None:
    """One generated day in the validated zone (and its raw partition and due labels).

    The Great Expectations gate is skipped: it has tests of its own, and the generator's
    clean partitions meet the contract.
    """
    if labels:
        synthetic.land_day(settings, day)  # raw activity and the labels due that day
    frame = synthetic.activity(settings.synthetic, day)
    table = pa.Table.from_pandas(frame, schema=synthetic.ACTIVITY_SCHEMA, preserve_index=False)
    lake.write_table_atomic(
        synthetic.keyed(settings, table),
        lake.partition_file(settings.validated_root, settings.project.source.dataset, day),
    )


def land_validated_history(settings: Settings, days: int) -> date:
    """`days` days from the generator's start date; returns the last one."""
    for offset in range(days):
        day = settings.synthetic.start_date + timedelta(days=offset)
        land_validated(settings, day)
    return day


def labelled_frame(settings: Settings, last_day: date, days: int = 6) -> pd.DataFrame:
    """A training frame of `days` prediction days up to `last_day`: each customer's features
    at the scoring time, with the generator's churn as the label."""
    frames = []
    for offset in range(days):
        day = last_day - timedelta(days=offset)
        frame = synthetic.activity(settings.synthetic, day)
        probability = synthetic.churn_probability(settings.synthetic, frame, day)
        frame["event_timestamp"] = pd.Timestamp(contracts.label_time(day))
        frame["churned"] = (probability > 0.15).astype("int64")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
