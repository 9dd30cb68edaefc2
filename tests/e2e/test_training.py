"""`training` and `model_rollback` end to end through Airflow, on one labelled world.

The tests run in order and share the registry: the first run promotes, a worse
candidate is rejected, an equal one is promoted, a rollback restores the older
champion, and a failing infra check blocks promotion. Each version's model card ends
with the decision taken.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines import contracts
from pipelines.io import tracking
from pipelines.registry import journal, model_versions
from pipelines.training import model_card

pytestmark = pytest.mark.e2e

LOGICAL_DATE = datetime(2026, 2, 15, tzinfo=UTC)
WORSE = {"n_estimators": 1, "max_depth": 1}


def _run(dag, conf=None):
    """Run a freshly parsed copy: in-process runs leave their conf in the Params."""
    from pipelines.settings import load_settings
    from tests.dag_runs import load_dag, run_dag

    fresh = load_dag(load_settings(), dag.dag_id)
    return run_dag(fresh, LOGICAL_DATE, conf or {})


def _events(asset: str, run_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == asset, AssetEvent.source_run_id == run_id)
        )
        return [row.extra for row in rows]


def _tags(settings, version: str) -> dict[str, str]:
    client = tracking.mlflow_client(settings)
    return client.get_model_version(settings.project.model.name, version).tags


def _card(settings, version: str) -> dict:
    """A version's stored model card (its JSON), checked to render as its stored markdown."""
    card = json.loads(model_card.stored(settings, version, model_card.CARD_JSON))
    assert model_card.stored(settings, version, model_card.CARD_MARKDOWN) == model_card.render(card)
    return card


def test_first_run_trains_tracks_and_promotes_a_champion(labelled_world, training_dag):
    _, settings = labelled_world

    # When the training DAG runs with no champion yet
    outcome = _run(training_dag, {"reason": "first model"})

    # Then it promotes version 1 and announces it
    assert outcome.state == "success", outcome.tasks
    assert outcome.tasks["promote"] == "success" and outcome.tasks["reject"] == "skipped"
    assert model_versions.alias_version(settings, contracts.CHAMPION) == "1"
    assert _events("model_promoted", outcome.run_id) == [{"version": "1", "previous": None}]
    # ... with everything a reviewer needs in MLflow
    client = tracking.mlflow_client(settings)
    version = client.get_model_version(settings.project.model.name, "1")
    run = client.get_run(version.run_id)
    assert {"holdout_roc_auc", "holdout_pr_auc", "holdout_log_loss", "holdout_brier"} <= set(
        run.data.metrics
    )
    assert "holdout_calibration_error" in run.data.metrics
    assert run.data.tags["reason"] == "first model"
    assert run.data.tags["feature_service"] == settings.project.model.feature_service
    assert len(run.data.tags["training_set.fingerprint"]) == 16
    assert run.inputs.dataset_inputs, "the training set is logged as an mlflow.data dataset"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {
        "plots/roc_curve.png",
        "plots/pr_curve.png",
        "plots/calibration.png",
        "plots/feature_importance.png",
    }
    profile = client.download_artifacts(run.info.run_id, "reference_profile.json")
    assert "predictions" in Path(profile).read_text()
    tags = _tags(settings, "1")
    assert tags["gate.passed"] == "true" and tags["gate.champion_version"] == "none"
    assert tags["infra_check.passed"] == "true"
    # ... and a model card that ends with the promotion
    card = _card(settings, "1")
    assert card["decision"]["status"] == "promoted" and card["decision"]["actor"] == "airflow"
    assert card["decision"]["reason"] == "first model"
    assert card["gate"]["passed"] is True and card["gate"]["champion_version"] is None
    assert card["gate"]["candidate"]["roc_auc"] == pytest.approx(
        float(tags["gate.candidate.roc_auc"])
    )
    assert card["infra_check"] == {"passed": True, "detail": tags["infra_check.detail"]}
    training_set = card["training_set"]
    assert training_set["rows"] == int(run.data.tags["training_set.rows"]) > 0
    assert training_set["start"] == run.data.tags["training_set.start"]
    assert training_set["end"] == run.data.tags["training_set.end"]
    assert 0.0 < training_set["label_share"] < 1.0
    assert [f["name"] for f in card["features"]] == list(settings.project.features)
    assert card["intended_use"] == settings.project.model.intended_use != ""
    assert card["limitations"] == list(settings.project.model.limitations)
    assert card["plots"] == sorted(artifacts)


def test_a_worse_candidate_is_rejected_and_the_champion_stays(labelled_world, training_dag):
    _, settings = labelled_world

    outcome = _run(training_dag, {"hyperparameters": WORSE, "reason": "deliberately worse"})

    assert outcome.state == "success", outcome.tasks
    assert outcome.tasks["promote"] == "skipped" and outcome.tasks["reject"] == "success"
    assert model_versions.alias_version(settings, contracts.CHAMPION) == "1"
    assert model_versions.alias_version(settings, contracts.CHALLENGER) == "2"
    assert _events("model_promoted", outcome.run_id) == []
    tags = _tags(settings, "2")
    assert tags["gate.passed"] == "false" and "roc_auc" in tags["rejected_because"]
    card = _card(settings, "2")
    assert card["decision"]["status"] == "rejected"
    assert card["decision"]["reason"] == tags["rejected_because"]
    assert card["gate"]["passed"] is False and card["gate"]["champion_version"] == "1"
    assert card["gate"]["champion"]["roc_auc"] > card["gate"]["candidate"]["roc_auc"]
    assert card["infra_check"]["passed"] is True
    assert card["hyperparameters"]["max_depth"] == "1"


def test_an_equal_candidate_is_promoted_and_rollback_restores_the_old_champion(
    labelled_world, training_dag, rollback_dag
):
    _, settings = labelled_world
    # Given a retrain on the same data (same metrics: "no worse" passes)
    assert _run(training_dag, {"reason": "weekly retrain"}).state == "success"
    assert model_versions.alias_version(settings, contracts.CHAMPION) == "3"
    assert model_versions.alias_version(settings, contracts.PREVIOUS_CHAMPION) == "1"

    # When an operator rolls back through the manual DAG
    outcome = _run(rollback_dag, {"reason": "v3 misbehaves in production"})

    # Then the previous champion serves again, and the audit trail tells the story
    assert outcome.state == "success", outcome.tasks
    assert model_versions.alias_version(settings, contracts.CHAMPION) == "1"
    assert model_versions.alias_version(settings, contracts.PREVIOUS_CHAMPION) == "3"
    trail = [(m.action, m.alias, m.from_version, m.to_version) for m in journal.history(settings)]
    assert trail == [
        ("promote", "champion", None, "1"),
        ("reject", "challenger", None, "2"),
        ("promote", "previous_champion", None, "1"),
        ("promote", "champion", "1", "3"),
        ("rollback", "champion", "3", "1"),
        ("rollback", "previous_champion", "1", "3"),
    ]
    assert journal.history(settings)[-1].reason == "v3 misbehaves in production"


def test_a_failing_infra_check_blocks_promotion(labelled_world, training_dag):
    patch, settings = labelled_world
    champion = model_versions.alias_version(settings, contracts.CHAMPION)
    # Given a serving budget no model can meet
    patch.setenv("MLOPS_GATE__MAX_MODEL_MEGABYTES", "0.001")
    try:
        outcome = _run(training_dag, {"reason": "must not ship"})
    finally:
        patch.delenv("MLOPS_GATE__MAX_MODEL_MEGABYTES")

    assert outcome.tasks["infra_check"] == "success"
    assert outcome.tasks["promote"] == "skipped" and outcome.tasks["reject"] == "success"
    assert model_versions.alias_version(settings, contracts.CHAMPION) == champion
    rejected = model_versions.alias_version(settings, contracts.CHALLENGER)
    assert "infra check: model is" in _tags(settings, rejected)["rejected_because"]


@pytest.mark.parametrize(
    ("conf", "complaint"),
    [
        ({"hyperparameters": {"max_depth": "deep"}}, "max_depth"),
        ({"hyperparameters": {"max_leaves": 8}}, "max_leaves"),
        ({"training_start": "2026-13-45"}, "2026-13-45"),
        ({"gate_overrides": {"roc_auc": {"min_absolute_change": -1}}}, "min_absolute_change"),
        ({"reason": ""}, "reason"),
    ],
)
def test_bad_params_are_refused_with_a_clear_message(labelled_world, training_dag, conf, complaint):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=complaint):
        _run(training_dag, conf)
