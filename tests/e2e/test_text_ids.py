"""A project whose customer ids are text, through the real jobs: the gate, Feast, training,
sharded scoring, shadow scoring and the drift monitor.

The demo project with `entity.type: string`; the demo generator lands its customers with
zero-padded text ids. Labels lag 3 days, so a short history trains a model and a scored
night gets its labels.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import contracts
from pipelines.demo import synthetic
from pipelines.demo.worlds import text_id_project
from pipelines.io import feast_store, lake
from pipelines.jobs import batch_scoring, drift_monitor, feature_pipeline, training
from pipelines.scoring import predictor, publishing, reproduction
from pipelines.settings import load_settings

pytestmark = pytest.mark.e2e

FIRST = date(2026, 1, 1)
LAST = date(2026, 1, 14)
LABEL_DELAY_DAYS = 3
# Scored nights: one whose labels land on the last night, and the last night.
SCORED = [LAST - timedelta(days=LABEL_DELAY_DAYS), LAST]


def _score_night(day: date) -> dict:
    """Plan, score and publish a night as `batch_scoring`'s tasks do, its plan crossing
    XCom as JSON; shadow-score it; the plan."""
    plan = json.loads(json.dumps(batch_scoring.plan_scoring(day)))
    for shard in batch_scoring.shards(plan):
        batch_scoring.score_shard(plan, json.loads(json.dumps(shard)))
    batch_scoring.publish_predictions(plan)
    return {"plan": plan, "shadow": batch_scoring.shadow_score(plan)}


@pytest.fixture(scope="module")
def text_world(tmp_path_factory):
    """Fourteen nights of 500 customers with text ids through the gate, the last one
    materialized; a champion (v1) and a challenger (v2); two nights scored."""
    root = tmp_path_factory.mktemp("text-ids")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_PROJECT", str(text_id_project(root / "project")))
        patch.setenv("MLOPS_STATE_ROOT", str(root / "state"))
        patch.setenv("MLOPS_SYNTHETIC__CUSTOMERS", "500")
        patch.setenv("MLOPS_SYNTHETIC__START_DATE", FIRST.isoformat())
        patch.setenv("MLOPS_SYNTHETIC__LABEL_DELAY_DAYS", str(LABEL_DELAY_DAYS))
        patch.setenv("MLOPS_SCORING__SHARD_ROWS", "200")
        settings = load_settings()
        for offset in range((LAST - FIRST).days + 1):
            day = FIRST + timedelta(days=offset)
            synthetic.land_day(settings, day)
            feature_pipeline.validate_partition(day)
            feature_pipeline.publish_partition(day)
        feature_pipeline.materialize(LAST)
        first = training.train_and_gate(LAST, None, None, None, "first champion", "test")
        worse = training.train_and_gate(
            LAST, None, None, {"n_estimators": 1, "max_depth": 1}, "worse", "test"
        )
        assert first["outcome"][0]["to_version"] == "1"
        assert worse["outcome"]["alias"] == "challenger"
        yield settings, {day: _score_night(day) for day in SCORED}


def _validated(settings, day: date) -> pa.Table:
    dataset = settings.project.feature_dataset
    return pq.read_table(lake.partition_file(settings.validated_root, dataset, day))


def test_the_gate_publishes_text_ids_sorted(text_world):
    settings, _ = text_world
    ids = _validated(settings, LAST).column("customer_id")

    assert ids.type == pa.string()
    assert ids.to_pylist() == sorted(ids.to_pylist())
    assert ids[0].as_py() == "0000100001" and len(ids) == settings.synthetic.customers


def test_the_online_store_serves_text_ids(text_world):
    # Given the last night materialized
    settings, _ = text_world
    rows = _validated(settings, LAST).to_pandas().set_index("customer_id")
    sample = list(rows.index[[0, 250, -1]])

    # When Feast serves three customers by their text ids
    store = feast_store.feature_store(settings)
    served = store.get_online_features(
        features=[f"{settings.project.source.feature_view}:sessions"],
        entity_rows=[{"customer_id": customer} for customer in sample],
    ).to_dict()

    # Then it serves their values of that night
    assert served["customer_id"] == sample
    assert served["sessions"] == rows.loc[sample, "sessions"].tolist()


def test_a_night_is_planned_in_text_ranges(text_world):
    settings, scored = text_world
    plan = contracts.ScoringPlan.from_xcom(scored[LAST]["plan"])
    ids = _validated(settings, LAST).column("customer_id").to_pylist()

    # The ranges start at the least id, end at the greatest, each where the next starts
    assert len(plan.shards) == 3
    assert plan.shards[0]["first"] == ids[0] and plan.shards[-1]["last"] == ids[-1]
    for before, after in zip(plan.shards, plan.shards[1:], strict=False):
        assert before["before"] == after["first"] and after["first"] in ids


@pytest.mark.parametrize("day", SCORED)
def test_every_customer_is_scored_once_on_feasts_features(text_world, day):
    # Given a night scored in three text ranges
    settings, scored = text_world
    plan = contracts.ScoringPlan.from_xcom(scored[day]["plan"])
    published = pd.read_parquet(publishing.partition(settings, publishing.PREDICTIONS, day))

    # Then each customer of the night has exactly one prediction, under its text id
    ids = _validated(settings, day).column("customer_id").to_pylist()
    assert sorted(published["customer_id"]) == ids
    # And the scores are the model's on the rows Feast's point-in-time retrieval gives
    store = feast_store.feature_store(settings)
    entity_df = pd.DataFrame(
        {"customer_id": ids, "event_timestamp": contracts.midnight_after(day)}
    ).iloc[::25]
    features = store.get_historical_features(
        entity_df=entity_df,
        features=store.get_feature_service(settings.project.model.feature_service),
    ).to_df()
    model = predictor.load_model(settings, plan)
    expected = model.pipeline.predict_proba(features[model.inputs])[:, 1]
    scores = published.set_index("customer_id").loc[features["customer_id"], "churn_probability"]
    np.testing.assert_array_equal(scores.to_numpy(), expected.astype(np.float64))


def test_shadow_scoring_compares_every_text_id(text_world):
    settings, scored = text_world

    shadow = scored[LAST]["shadow"]

    assert shadow["status"] == "scored" and shadow["challenger_version"] == "2"
    assert shadow["rows_compared"] == settings.synthetic.customers


def test_the_drift_monitor_checks_a_night_of_text_ids(text_world):
    settings, _ = text_world

    report = contracts.DriftReport.from_xcom(drift_monitor.check_drift(LAST))

    # Its features and predictions are checked, and the labels that landed tonight judge
    # the predictions of the night they are about, by text id
    assert report.rows == settings.synthetic.customers and report.model_version == "1"
    (performance,) = report.performance
    assert performance.nights == [SCORED[0].isoformat()]
    assert performance.rows == settings.synthetic.customers


def test_a_night_of_text_ids_is_reproduced_from_its_lineage(text_world):
    # Given a night scored in text ranges, and two of its customers
    settings, _ = text_world
    day = SCORED[0]
    path = publishing.partition(settings, publishing.PREDICTIONS, day)
    ids = pq.read_table(path, columns=[settings.project.entity.column]).column(0)
    some = reproduction.entity_ids(settings, [ids[-1].as_py(), ids[len(ids) // 2].as_py()])

    # When the night, then those customers alone, are recomputed from its lineage
    whole = reproduction.reproduce(settings, day)
    alone = reproduction.reproduce(settings, day, some)

    # Then both are bit-exact
    assert whole["equal"] and whole["rows_compared"] == settings.synthetic.customers
    assert alone["equal"] and alone["rows_compared"] == 2, alone
