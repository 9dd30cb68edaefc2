"""The evaluation gate, the infra check, and alias moves with their audit trail.

The gate's arithmetic is tested as a pure function; everything that touches the
registry runs against a real MLflow backend (SQLite under a temporary state root).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from pipelines import contracts
from pipelines.demo import synthetic
from pipelines.errors import PromotionError
from pipelines.io import tracking
from pipelines.project import MetricThreshold, load_project
from pipelines.registry import alias_moves, evaluation, infracheck, journal, model_versions
from pipelines.settings import Settings, load_settings
from pipelines.training import registration, splits

# The gate's arithmetic -----------------------------------------------------------------------


def rule(greater_is_better: bool = True, **limits: float) -> MetricThreshold:
    return MetricThreshold(metric="score", greater_is_better=greater_is_better, **limits)


# Values are binary fractions, so "exactly on the boundary" is exact in floating point.
PASSING = [
    pytest.param(rule(threshold=0.5), 0.75, None, id="higher-above-floor"),
    pytest.param(rule(threshold=0.75), 0.75, None, id="higher-exactly-at-floor"),
    pytest.param(rule(False, threshold=0.5), 0.25, None, id="lower-below-ceiling"),
    pytest.param(rule(False, threshold=0.5), 0.5, None, id="lower-exactly-at-ceiling"),
    pytest.param(rule(min_absolute_change=0.125), 0.9375, 0.75, id="higher-beats-champion-by-more"),
    pytest.param(rule(min_absolute_change=0.125), 0.875, 0.75, id="higher-beats-by-exactly-abs"),
    pytest.param(
        rule(False, min_absolute_change=0.125), 0.375, 0.5, id="lower-beats-by-exactly-abs"
    ),
    pytest.param(rule(min_absolute_change=0.0), 0.75, 0.75, id="abs-zero-ties-champion"),
    pytest.param(rule(min_relative_change=0.25), 0.625, 0.5, id="higher-beats-by-exactly-rel"),
    pytest.param(
        rule(False, min_relative_change=0.25), 0.375, 0.5, id="lower-beats-by-exactly-rel"
    ),
    pytest.param(rule(False, min_relative_change=0.0), 0.5, 0.5, id="rel-zero-ties-champion"),
    pytest.param(rule(min_relative_change=0.5), -0.25, -0.5, id="rel-of-a-negative-champion"),
    pytest.param(
        rule(threshold=0.5, min_absolute_change=0.25), 0.625, None, id="first-model-ignores-change"
    ),
    pytest.param(
        rule(False, threshold=0.5, min_relative_change=0.5),
        0.5,
        None,
        id="first-model-ignores-relative-change",
    ),
]

FAILING = [
    pytest.param(
        rule(threshold=0.75), 0.5, None, ["score 0.5000 is not at least 0.7500"], id="below-floor"
    ),
    pytest.param(
        rule(False, threshold=0.5),
        0.625,
        None,
        ["score 0.6250 is not at most 0.5000"],
        id="above-ceiling",
    ),
    pytest.param(
        rule(min_absolute_change=0.125),
        0.8125,
        0.75,
        ["score 0.8125 is not at least 0.8750 (champion 0.7500, required change 0.125)"],
        id="higher-beats-champion-by-too-little",
    ),
    pytest.param(
        rule(False, min_absolute_change=0.125),
        0.4375,
        0.5,
        ["score 0.4375 is not at most 0.3750 (champion 0.5000, required change 0.125)"],
        id="lower-beats-champion-by-too-little",
    ),
    pytest.param(
        rule(min_absolute_change=0.0),
        0.7490,
        0.75,
        ["score 0.7490 is not at least 0.7500 (champion 0.7500, required change 0.0)"],
        id="abs-zero-worse-than-champion",
    ),
    pytest.param(
        rule(False, min_relative_change=0.0),
        0.51,
        0.5,
        ["score 0.5100 is not at most 0.5000 (champion 0.5000, required relative change 0.0)"],
        id="rel-zero-worse-than-champion",
    ),
    pytest.param(
        rule(min_relative_change=0.25),
        0.6,
        0.5,
        ["score 0.6000 is not at least 0.6250 (champion 0.5000, required relative change 0.25)"],
        id="higher-beats-by-too-little-rel",
    ),
    pytest.param(
        rule(threshold=0.75, min_absolute_change=0.5),
        0.5,
        None,
        ["score 0.5000 is not at least 0.7500"],
        id="first-model-only-the-floor-fails",
    ),
    pytest.param(
        rule(threshold=0.75, min_absolute_change=0.0),
        0.5,
        0.875,
        [
            "score 0.5000 is not at least 0.7500",
            "score 0.5000 is not at least 0.8750 (champion 0.8750, required change 0.0)",
        ],
        id="both-the-floor-and-the-champion",
    ),
]


@pytest.mark.parametrize(("threshold", "value", "champion"), PASSING)
def test_check_thresholds_passes(threshold, value, champion):
    # Given a candidate (and maybe a champion) on the right side of the rule
    champion_metrics = None if champion is None else {"score": champion}

    # When the gate checks it
    failures = evaluation.check_thresholds({"score": value}, champion_metrics, (threshold,))

    # Then nothing fails
    assert failures == []


@pytest.mark.parametrize(("threshold", "value", "champion", "expected"), FAILING)
def test_check_thresholds_fails_naming_the_metric_and_the_numbers(
    threshold, value, champion, expected
):
    # Given a candidate (and maybe a champion) on the wrong side of the rule
    champion_metrics = None if champion is None else {"score": champion}

    # When the gate checks it
    failures = evaluation.check_thresholds({"score": value}, champion_metrics, (threshold,))

    # Then each miss is one sentence naming the metric, the value, the bound and the champion
    assert failures == expected


def test_check_thresholds_reports_every_metric_that_misses():
    # Given the default gate, a champion, and a candidate worse on both metrics
    thresholds = load_project("demo").model.gate
    champion = {"roc_auc": 0.8, "log_loss": 0.4}
    candidate = {"roc_auc": 0.79, "log_loss": 0.41, "brier": 0.2}

    # When the gate checks it
    failures = evaluation.check_thresholds(candidate, champion, thresholds)

    # Then both misses are listed, in the order of the thresholds
    assert [failure.split()[0] for failure in failures] == ["roc_auc", "log_loss"]


def test_check_thresholds_of_a_first_model_applies_only_value_thresholds():
    # Given the default gate and no champion
    thresholds = load_project("demo").model.gate

    # When a good and a poor first model are checked
    good = evaluation.check_thresholds({"roc_auc": 0.7, "log_loss": 0.5}, None, thresholds)
    poor = evaluation.check_thresholds({"roc_auc": 0.6, "log_loss": 0.7}, None, thresholds)

    # Then the good one passes and the poor one misses both value thresholds
    assert good == []
    assert poor == [
        "roc_auc 0.6000 is not at least 0.6500",
        "log_loss 0.7000 is not at most 0.6000",
    ]


# Gate overrides ------------------------------------------------------------------------------


def test_thresholds_with_overrides_changes_only_the_named_metric():
    # Given the default gate
    defaults = load_project("demo").model.gate

    # When a run raises the ROC AUC floor
    changed = evaluation.thresholds_with_overrides(defaults, {"roc_auc": {"threshold": 0.9}})

    # Then that threshold changed, the rest of its rule and the other rules did not
    by_metric = {threshold.metric: threshold for threshold in changed}
    assert [threshold.metric for threshold in changed] == ["roc_auc", "log_loss"]
    assert by_metric["roc_auc"].threshold == 0.9
    assert by_metric["roc_auc"].min_absolute_change == 0.0
    assert by_metric["roc_auc"].greater_is_better is True
    assert by_metric["log_loss"] == defaults[1]


def test_thresholds_without_overrides_are_the_defaults():
    defaults = load_project("demo").model.gate

    assert evaluation.thresholds_with_overrides(defaults, None) == defaults
    assert evaluation.thresholds_with_overrides(defaults, {}) == defaults


def test_override_of_an_unknown_metric_is_a_promotion_error():
    with pytest.raises(PromotionError, match="unknown metric 'accuracy'"):
        evaluation.thresholds_with_overrides(
            load_project("demo").model.gate, {"accuracy": {"threshold": 0.9}}
        )


@pytest.mark.parametrize(
    "changes",
    [
        {"min_absolute_change": -0.01},
        {"min_relative_change": -0.1},
        {"min_relative_change": 1.5},
        {"treshold": 0.9},
        {"threshold": "high"},
    ],
    ids=["negative-absolute", "negative-relative", "relative-above-one", "typo", "not-a-number"],
)
def test_invalid_override_is_a_validation_error(changes):
    with pytest.raises(ValidationError):
        evaluation.thresholds_with_overrides(load_project("demo").model.gate, {"roc_auc": changes})


# A real registry -----------------------------------------------------------------------------

START = date(2026, 1, 1)
SMALL_MODEL = {"n_estimators": 30}


def labelled_days(settings: Settings, days: int) -> pd.DataFrame:
    """A training frame shaped like the point-in-time set: one row per customer per day."""
    cfg = settings.synthetic
    rng = np.random.default_rng(11)
    frames = []
    for offset in range(days):
        day = cfg.start_date + timedelta(days=offset)
        frame = synthetic.activity(cfg, day)
        truth = synthetic.churn_probability(cfg, frame, day)
        after = day + timedelta(days=1)
        frame["event_timestamp"] = pd.Timestamp(
            datetime(after.year, after.month, after.day, tzinfo=UTC)
        )
        frame["churned"] = (rng.random(len(frame)) < truth).astype(np.int64)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Trained:
    """A state root whose registry holds three versions, and the data they were gated on."""

    state_root: Path
    holdout: pd.DataFrame
    strong: str  # a real model
    weak: str  # a much weaker one (two stumps)
    twin: str  # another version of the strong model's artifacts


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    root = tmp_path_factory.mktemp("registry") / "state"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_STATE_ROOT", str(root))
        patch.setenv("MLOPS_SYNTHETIC__CUSTOMERS", "300")
        settings = load_settings()
        frame = labelled_days(settings, days=10)
        strong = registration.train_and_register(settings, frame, SMALL_MODEL)
        weak = registration.train_and_register(
            settings, frame, {"n_estimators": 2, "max_depth": 1, "learning_rate": 0.05}
        )
        client = tracking.mlflow_client(settings)
        registered = client.get_model_version(settings.project.model.name, strong.version)
        twin = client.create_model_version(
            settings.project.model.name,
            registered.source,
            run_id=registered.run_id,
            model_id=registered.model_id,
        )
    training = settings.training
    holdout = splits.split_by_time(
        frame, "event_timestamp", training.validation_share, training.holdout_share
    ).holdout
    return Trained(root, holdout, strong.version, weak.version, str(twin.version))


@pytest.fixture
def registry(trained, settings) -> Settings:
    """Settings of a fresh state root whose registry is a copy of the trained one.

    Each test moves aliases in its own copy; the artifacts stay where training put them.
    """
    settings.mlflow_root.mkdir(parents=True)
    shutil.copy(trained.state_root / "mlflow" / "mlflow.db", settings.mlflow_root / "mlflow.db")
    return settings


def aliases(settings: Settings) -> dict[str, str | None]:
    names = (contracts.CHAMPION, contracts.PREVIOUS_CHAMPION, contracts.CHALLENGER)
    return {name: model_versions.alias_version(settings, name) for name in names}


def version_tags(settings: Settings, version: str) -> dict[str, str]:
    client = tracking.mlflow_client(settings)
    return client.get_model_version(settings.project.model.name, version).tags


def moved(moves: list[contracts.AliasMove]) -> list[tuple[str, str, str | None, str | None]]:
    return [(m.action, m.alias, m.from_version, m.to_version) for m in moves]


# Promotion and the audit trail


def test_first_promotion_sets_the_champion_and_records_who_and_why(registry, trained):
    # Given a registry without a champion
    assert aliases(registry) == {"champion": None, "previous_champion": None, "challenger": None}

    # When the strong version is promoted
    moves = alias_moves.promote(registry, trained.strong, None, "first model", "alice", "test")

    # Then it is the champion, there is no previous one, and the move is in the audit trail
    assert aliases(registry) == {
        "champion": trained.strong,
        "previous_champion": None,
        "challenger": None,
    }
    assert moved(moves) == [("promote", "champion", None, trained.strong)]
    (entry,) = journal.history(registry)
    assert entry == moves[0]
    assert (entry.reason, entry.actor, entry.source) == ("first model", "alice", "test")
    assert datetime.fromisoformat(entry.when).tzinfo is not None


def test_promotion_keeps_the_old_champion_as_previous_champion(registry, trained):
    # Given a champion
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")

    # When another version is promoted against it
    moves = alias_moves.promote(registry, trained.twin, trained.strong, "retrained", "bob")

    # Then the new version is champion, the old one previous champion, both moves audited
    assert aliases(registry)["champion"] == trained.twin
    assert aliases(registry)["previous_champion"] == trained.strong
    assert moved(moves) == [
        ("promote", "previous_champion", None, trained.strong),
        ("promote", "champion", trained.strong, trained.twin),
    ]
    assert moved(journal.history(registry)) == [
        ("promote", "champion", None, trained.strong),
        *moved(moves),
    ]
    assert [entry.actor for entry in journal.history(registry)] == ["alice", "bob", "bob"]


def test_promotion_refuses_when_the_champion_moved_since_the_gate(registry, trained):
    # Given a gate that compared against "no champion", and a champion promoted meanwhile
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")
    before = journal.history(registry)

    # When the gated candidate is promoted with the stale expectation
    # Then it is refused, naming both champions, and nothing moved
    with pytest.raises(PromotionError, match=f"champion moved from vNone to v{trained.strong}"):
        alias_moves.promote(registry, trained.weak, None, "stale gate", "bob")
    with pytest.raises(PromotionError, match=f"from v{trained.twin} to v{trained.strong}"):
        alias_moves.promote(registry, trained.weak, trained.twin, "stale gate", "bob")
    assert aliases(registry)["champion"] == trained.strong
    assert journal.history(registry) == before


def test_promotion_refuses_when_the_expected_champion_is_gone(registry, trained):
    # Given a gate that compared against a champion, which has no champion now
    # When / Then promoting against that champion is refused
    with pytest.raises(PromotionError, match=f"from v{trained.strong} to vNone"):
        alias_moves.promote(registry, trained.weak, trained.strong, "stale gate", "bob")
    assert aliases(registry)["champion"] is None


def test_reject_labels_the_candidate_challenger_with_the_reason(registry, trained):
    # Given a champion
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")

    # When a weaker candidate is rejected
    move = alias_moves.reject(registry, trained.weak, "gate: roc_auc too low", "airflow", "dag")

    # Then the champion stays, the candidate is challenger and carries the reason
    assert aliases(registry) == {
        "champion": trained.strong,
        "previous_champion": None,
        "challenger": trained.weak,
    }
    assert version_tags(registry, trained.weak)["rejected_because"] == "gate: roc_auc too low"
    assert moved([move]) == [("reject", "challenger", None, trained.weak)]
    assert journal.history(registry)[-1] == move


def test_promoting_the_challenger_clears_the_challenger_alias(registry, trained):
    # Given a rejected challenger
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")
    alias_moves.reject(registry, trained.twin, "needs approval", "airflow")

    # When it is promoted after all
    moves = alias_moves.promote(registry, trained.twin, trained.strong, "approved", "carol")

    # Then it is champion and no longer challenger
    assert aliases(registry) == {
        "champion": trained.twin,
        "previous_champion": trained.strong,
        "challenger": None,
    }
    assert moved(moves)[-1] == ("promote", "challenger", trained.twin, None)


def test_rollback_restores_the_previous_champion(registry, trained):
    # Given a champion that replaced an earlier one
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")
    alias_moves.promote(registry, trained.weak, trained.strong, "retrained", "alice")

    # When it is rolled back
    moves = alias_moves.rollback(registry, None, "scores look wrong", "oncall", "cli")

    # Then the earlier champion serves again, and the rolled-back one is previous champion
    assert aliases(registry)["champion"] == trained.strong
    assert aliases(registry)["previous_champion"] == trained.weak
    assert moved(moves) == [
        ("rollback", "champion", trained.weak, trained.strong),
        ("rollback", "previous_champion", trained.strong, trained.weak),
    ]
    assert journal.history(registry)[-2:] == moves
    assert {(m.reason, m.actor, m.source) for m in moves} == {
        ("scores look wrong", "oncall", "cli")
    }


def test_a_rollback_run_again_completes_it_and_never_toggles(registry, trained):
    # Given a rollback decided while v(weak) serves, carried out once
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")
    alias_moves.promote(registry, trained.weak, trained.strong, "retrained", "alice")
    target = alias_moves.rollback_target(registry, None)
    alias_moves.apply_rollback(registry, target, "scores look wrong", "oncall")
    audited = len(journal.history(registry))

    # When it runs again (a retry after a crash that followed the moves)
    again = alias_moves.apply_rollback(registry, target, "scores look wrong", "oncall")

    # Then nothing moves back: the decided champion still serves, nothing more is audited
    assert again == []
    assert aliases(registry)["champion"] == trained.strong
    assert aliases(registry)["previous_champion"] == trained.weak
    assert len(journal.history(registry)) == audited


def test_a_rollback_killed_between_its_moves_is_completed_by_its_retry(registry, trained):
    # Given a rollback that moved `champion` and died before `previous_champion`
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")
    alias_moves.promote(registry, trained.weak, trained.strong, "retrained", "alice")
    target = alias_moves.rollback_target(registry, None)
    client = tracking.mlflow_client(registry)
    client.set_registered_model_alias(registry.project.model.name, "champion", trained.strong)

    # When its retry runs
    moves = alias_moves.apply_rollback(registry, target, "scores look wrong", "oncall")

    # Then it completes the rollback, once
    assert moved(moves) == [("rollback", "previous_champion", trained.strong, trained.weak)]
    assert aliases(registry)["champion"] == trained.strong
    assert aliases(registry)["previous_champion"] == trained.weak


def test_a_rollback_run_cleared_whole_decides_the_same_target_again(registry, trained):
    # Given an Airflow run that rolled v(weak) back to v(strong)
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")
    alias_moves.promote(registry, trained.weak, trained.strong, "retrained", "alice")
    first = alias_moves.rollback_target(registry, None, "manual__run-1")
    done = alias_moves.apply_rollback(
        registry, first, "scores look wrong", "airflow", "manual__run-1"
    )
    audited = len(journal.history(registry))

    # When the whole run is cleared: it decides its target again, then applies it
    again = alias_moves.rollback_target(registry, None, "manual__run-1")
    moves = alias_moves.apply_rollback(
        registry, again, "scores look wrong", "airflow", "manual__run-1"
    )

    # Then it decides what it decided before, reports the moves it made, and moves nothing
    assert again == first and moves == done
    assert len(journal.history(registry)) == audited
    assert aliases(registry)["champion"] == trained.strong
    # while another run would roll back to the previous champion, as asked
    assert alias_moves.rollback_target(registry, None, "manual__run-2").version == trained.weak


def test_a_decided_rollback_is_refused_once_the_champion_moved_elsewhere(registry, trained):
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")
    alias_moves.promote(registry, trained.weak, trained.strong, "retrained", "alice")
    target = alias_moves.rollback_target(registry, None)
    alias_moves.promote(registry, trained.twin, trained.weak, "a newer model", "alice")

    with pytest.raises(PromotionError, match="decide the rollback again"):
        alias_moves.apply_rollback(registry, target, "stale", "oncall")
    assert aliases(registry)["champion"] == trained.twin


def test_rollback_to_a_named_version(registry, trained):
    # Given a champion that replaced an earlier one
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")
    alias_moves.promote(registry, trained.weak, trained.strong, "retrained", "alice")

    # When it is rolled back to a version that was never champion
    alias_moves.rollback(registry, trained.twin, "known good artifacts", "oncall")

    # Then that version serves, and the replaced one is previous champion
    assert aliases(registry)["champion"] == trained.twin
    assert aliases(registry)["previous_champion"] == trained.weak


def test_rollback_with_nothing_to_roll_back_to_is_a_promotion_error(registry, trained):
    # Given a registry that never had a champion
    # When / Then rolling back is refused, and nothing is recorded
    with pytest.raises(PromotionError, match="no previous champion to roll back to"):
        alias_moves.rollback(registry, None, "panic", "oncall")
    assert journal.history(registry) == []

    # And with a first champion only, there is still nothing to roll back to
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")
    with pytest.raises(PromotionError, match="no previous champion to roll back to"):
        alias_moves.rollback(registry, None, "panic", "oncall")


def test_rollback_to_the_serving_champion_is_a_promotion_error(registry, trained):
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")

    with pytest.raises(PromotionError, match=f"v{trained.strong} is already the champion"):
        alias_moves.rollback(registry, trained.strong, "panic", "oncall")


# Moving an alias to a version the registry does not have raises MlflowException, not
# PromotionError; worse, `promote` first moves `previous_champion` to the serving champion
# and only then fails on the missing version, leaving a half-done, audited move behind.


def test_promoting_a_version_that_does_not_exist_moves_nothing(registry, trained):
    # Given a champion
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")

    # When a version number that was never registered is promoted
    with pytest.raises(PromotionError, match="999"):
        alias_moves.promote(registry, "999", trained.strong, "typo", "bob")

    # Then it is refused before any alias moved or any move was recorded
    assert aliases(registry)["champion"] == trained.strong
    assert aliases(registry)["previous_champion"] is None
    assert len(journal.history(registry)) == 1


def test_rolling_back_to_a_version_that_does_not_exist_is_a_promotion_error(registry, trained):
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")

    with pytest.raises(PromotionError, match="999"):
        alias_moves.rollback(registry, "999", "typo", "oncall")
    assert aliases(registry)["champion"] == trained.strong


# The gate on real models


def test_gate_of_a_first_model_applies_value_thresholds_only_and_tags_the_version(
    registry, trained
):
    # Given no champion and a gate that also demands a large improvement over a champion
    overrides = {"roc_auc": {"min_absolute_change": 0.5}}

    # When the strong version is evaluated on the holdout days
    decision = evaluation.evaluate(registry, trained.strong, trained.holdout, overrides)

    # Then it passes on its value thresholds alone
    assert decision.passed, decision.reasons
    assert decision.reasons == ["every threshold holds"]
    assert decision.champion_version is None
    assert decision.champion_metrics == {}
    assert decision.candidate_metrics["roc_auc"] >= 0.65
    assert decision.candidate_metrics["log_loss"] <= 0.6

    # And the decision and every number behind it are tags of the version
    tags = version_tags(registry, trained.strong)
    assert tags["gate.passed"] == "true"
    assert tags["gate.reasons"] == "every threshold holds"
    assert tags["gate.champion_version"] == "none"
    for metric, value in decision.candidate_metrics.items():
        assert tags[f"gate.candidate.{metric}"] == f"{value:.6f}"
    assert not [key for key in tags if key.startswith("gate.champion.")]
    recorded = {rule["metric"]: rule for rule in json.loads(tags["gate.thresholds"])}
    assert recorded["roc_auc"]["min_absolute_change"] == 0.5


def test_gate_rejects_a_candidate_worse_than_the_champion(registry, trained):
    # Given the strong version as champion
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")

    # When the weak version is evaluated on the same holdout
    decision = evaluation.evaluate(registry, trained.weak, trained.holdout)

    # Then it fails, and the reason compares it with the champion in numbers
    assert not decision.passed
    assert decision.champion_version == trained.strong
    assert decision.candidate_metrics["roc_auc"] < decision.champion_metrics["roc_auc"]
    roc_auc = [reason for reason in decision.reasons if reason.startswith("roc_auc")]
    assert roc_auc
    assert f"champion {decision.champion_metrics['roc_auc']:.4f}" in " ".join(roc_auc)
    tags = version_tags(registry, trained.weak)
    assert tags["gate.passed"] == "false"
    assert tags["gate.champion_version"] == trained.strong
    assert tags["gate.champion.roc_auc"] == f"{decision.champion_metrics['roc_auc']:.6f}"
    assert "roc_auc" in tags["gate.reasons"]


def test_gate_passes_a_candidate_exactly_as_good_as_the_champion(registry, trained):
    # Given the strong version as champion
    alias_moves.promote(registry, trained.strong, None, "first model", "alice")

    # When another version of the same model is evaluated (change thresholds of 0: no worse)
    decision = evaluation.evaluate(registry, trained.twin, trained.holdout)

    # Then it ties on every metric and passes
    assert decision.candidate_metrics == decision.champion_metrics
    assert decision.passed, decision.reasons


# The infra check


def sample_file(trained: Trained, directory: Path, rows: int = 50) -> Path:
    path = directory / "sample.parquet"
    trained.holdout.head(rows).to_parquet(path, index=False)
    return path


def test_scoring_a_sample_of_a_valid_model_passes(registry, trained, tmp_path):
    # Given a sample of holdout rows
    path = sample_file(trained, tmp_path)

    # When the infra check's body scores it with the strong version
    check = infracheck.score_sample_here(registry, trained.strong, path)

    # Then every row got a valid probability and the model is within budget
    assert check.passed, check.detail
    assert check.rows == 50
    assert 0.0 < check.model_megabytes < registry.gate.max_model_megabytes
    assert check.detail == "scored 50 rows with valid probabilities"


def test_a_model_over_the_size_budget_fails_naming_the_budget(
    registry, trained, tmp_path, monkeypatch
):
    # Given a size budget far below any model
    monkeypatch.setenv("MLOPS_GATE__MAX_MODEL_MEGABYTES", "0.0001")
    tiny_budget = load_settings()

    # When the strong version is checked
    check = infracheck.score_sample_here(
        tiny_budget, trained.strong, sample_file(trained, tmp_path)
    )

    # Then it fails, naming its size and the budget
    assert not check.passed
    assert check.rows == 50
    assert f"model is {check.model_megabytes:.2f} MB" in check.detail
    assert "over the 0.0001 MB budget" in check.detail


def test_infra_check_in_a_fresh_process_passes_a_good_version(registry, trained, tmp_path):
    # Given a registered version and a sample of holdout rows
    sample = trained.holdout.head(40)

    # When it is loaded and scored in a fresh process
    check = infracheck.infra_check(registry, trained.strong, sample, tmp_path / "infra")

    # Then it passes, and the verdict is a tag of the version
    assert check.passed, check.detail
    assert check.rows == 40
    tags = version_tags(registry, trained.strong)
    assert tags["infra_check.passed"] == "true"
    assert tags["infra_check.detail"] == check.detail


def test_infra_check_of_a_missing_version_fails_with_a_clear_detail(registry, trained, tmp_path):
    # Given a version number the registry does not have
    # When the infra check loads it in a fresh process
    check = infracheck.infra_check(registry, "999", trained.holdout.head(5), tmp_path / "infra")

    # Then it fails, and says the model did not load and why
    assert not check.passed
    assert check.rows == 0
    assert check.detail.startswith("model did not load or score: ")
    assert "version=999) not found" in check.detail
