"""The model card: its JSON from the run's records, its one rendering as markdown.

The cards of real versions (promoted and rejected, through the DAG and the CLI) are checked
in `tests/e2e/test_training.py` and `tests/unit/test_cli.py`; here, the pure parts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.contracts import AliasMove
from pipelines.monitoring import profiling
from pipelines.project import DriftPolicy
from pipelines.settings import DriftSettings
from pipelines.training import model_card


def move(action: str, alias: str, before: str | None, after: str | None) -> AliasMove:
    return AliasMove("2026-02-15T03:00:00+00:00", action, alias, before, after, "why", "bob", "r1")


def card(**changes: object) -> dict:
    """A card as `model_card.build` gives it, for a version still pending."""
    document: dict = {
        "model": {
            "name": "churn",
            "version": "3",
            "run_id": "abc",
            "registered": "2026-02-15T03:00:00+00:00",
            "project": "Generated customers.",
            "feature_service": "churn_model_v1",
            "code_version": "0123abc",
            "reason": "weekly retrain",
        },
        "intended_use": "Rank customers by churn risk.",
        "limitations": ["Generated data only."],
        "training_set": {
            "start": "2026-01-02T00:00:00+00:00",
            "end": "2026-01-22T00:00:00+00:00",
            "days": 21,
            "rows": 10500,
            "label": "churned",
            "label_share": 0.125,
            "holdout_start": "2026-01-19T00:00:00+00:00",
            "holdout_rows": 2000,
            "fingerprint": "f00d",
        },
        "reference_profile": {"artifact": "reference_profile.json", "rows": 7000},
        "features": [
            {
                "name": "plan",
                "kind": "categorical",
                "drift_policy": "monitored",
                "categories": 3,
                "top": {"basic": 0.5},
            }
        ],
        "hyperparameters": {"max_depth": "4"},
        "metrics": {"holdout": {"roc_auc": 0.81}, "validation": {}, "best_iteration": 41},
        "plots": ["plots/roc_curve.png"],
        "gate": None,
        "infra_check": None,
        "decision": {"status": "pending", "reason": "", "actor": "", "source": "", "when": ""},
    }
    return {**document, **changes}


def test_a_promotion_is_decided_by_the_champion_move():
    # Given the audit entries of a promotion that also cleared the challenger alias
    moves = [
        move("promote", "previous_champion", None, "1"),
        move("promote", "champion", "1", "3"),
        move("promote", "challenger", "3", None),
    ]

    # Then the card's decision is the champion move's
    assert model_card.decided(moves) == model_card.Decision(
        "promoted", "why", "bob", "r1", "2026-02-15T03:00:00+00:00"
    )


def test_a_rejection_is_decided_by_the_challenger_move():
    decision = model_card.decided([move("reject", "challenger", "2", "3")])

    assert decision.status == "rejected" and decision.reason == "why"


def test_a_pending_card_renders_what_is_known_and_says_what_is_not_yet():
    text = model_card.render(card())

    assert text.startswith("# Model card: churn v3\n\n**Decision: pending**")
    assert "Rank customers by churn risk." in text and "- Generated data only." in text
    assert "| rows | 10,500 (holdout: 2,000 rows from 2026-01-19T00:00:00+00:00) |" in text
    assert "| label | `churned`, positive share 12.5% |" in text
    assert "| `plan` | categorical | monitored | 3 categories; basic 50.0% |" in text
    assert "| roc_auc | 0.81 | unknown |" in text
    assert "## Evaluation gate\n\nNot evaluated yet." in text
    assert "## Infra check\n\nNot run yet." in text
    # Figures are linked where registration logged them, relative to the card's folder
    assert "![roc_curve](../plots/roc_curve.png)" in text


def test_a_decided_card_renders_the_gate_against_the_champion_and_the_decision():
    # Given a rejected candidate's card, gated against champion v2
    gate = {
        "passed": False,
        "champion_version": "2",
        "reasons": ["roc_auc 0.7000 is not at least 0.8100 (champion 0.8100, required change 0)"],
        "thresholds": [
            {
                "metric": "roc_auc",
                "greater_is_better": True,
                "threshold": 0.65,
                "min_absolute_change": 0.0,
                "min_relative_change": None,
            }
        ],
        "candidate": {"roc_auc": 0.7, "brier": 0.1},
        "champion": {"roc_auc": 0.81, "brier": 0.09},
    }
    decision = {
        "status": "rejected",
        "reason": "gate: roc_auc",
        "actor": "airflow",
        "source": "manual__1",
        "when": "2026-02-15T03:10:00+00:00",
    }
    infra = {"passed": True, "detail": "scored 500 rows with valid probabilities"}

    text = model_card.render(card(gate=gate, decision=decision, infra_check=infra))

    # Then the decision, the verdict, each metric beside the champion's and the rule show
    assert "**Decision: rejected** (challenger) on 2026-02-15T03:10:00+00:00 by airflow " in text
    assert "**Failed**, against the champion v2, both scored on the same holdout." in text
    assert "| roc_auc | 0.7 | 0.81 | at least 0.65; no worse |" in text
    assert "| brier | 0.1 | 0.09 | - |" in text
    assert "- roc_auc 0.7000 is not at least 0.8100" in text
    assert "**Passed**: scored 500 rows with valid probabilities" in text


def test_a_project_without_intended_use_or_limitations_says_so():
    text = model_card.render(card(intended_use="", limitations=[]))

    assert "_Not stated: set `model.intended_use` in the project._" in text
    assert "_None stated: set `model.limitations` in the project._" in text


def test_the_feature_summary_gives_each_features_kind_policy_and_a_few_numbers():
    # Given a reference profile of one numeric feature (one value missing) and one categorical
    features = pd.DataFrame(
        {"tenure": [1.0, 2.0, 3.0, np.nan] * 25, "plan": ["a", "a", "a", "b"] * 25}
    )
    profile = profiling.reference_profile(
        features, ["plan"], np.full(100, 0.2), {}, 10, DriftSettings()
    )

    # When it is summarized, with tenure's drift declared monotone
    summary = model_card.feature_summary(profile, DriftPolicy(features={"tenure": "monotone"}))

    # Then
    tenure, plan = summary
    assert tenure["name"] == "tenure" and tenure["kind"] == "numeric"
    assert tenure["drift_policy"] == "monotone"
    assert tenure["mean"] == pytest.approx(2.0) and tenure["median"] == pytest.approx(2.0)
    assert tenure["missing_share"] == pytest.approx(0.25)
    assert plan == {
        "name": "plan",
        "kind": "categorical",
        "drift_policy": "monitored",
        "categories": 2,
        "top": {"a": 0.75, "b": 0.25},
    }
