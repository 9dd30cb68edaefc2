"""Training: the time split, hyperparameters, features, metrics, and how the model behaves."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pipelines import contracts
from pipelines.demo import synthetic
from pipelines.errors import ConfigurationError
from pipelines.project import load_project
from pipelines.settings import SyntheticSettings, TrainingSettings
from pipelines.training import fitting, model_metrics, registration, splits

START = date(2026, 1, 1)
KEYS = ["customer_id", "event_timestamp", "churned"]
METRICS = {"roc_auc", "pr_auc", "log_loss", "brier", "calibration_error"}


def midnight(day: date) -> pd.Timestamp:
    return pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))


def labelled_days(cfg: SyntheticSettings, days: int, seed: int = 0) -> pd.DataFrame:
    """A training frame shaped like the point-in-time set: one row per customer per day.

    Features are the day's activity, the label is drawn from the hidden ground truth,
    and the timestamp is the prediction time (midnight after the day), as in the lake.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for offset in range(days):
        day = cfg.start_date + timedelta(days=offset)
        frame = synthetic.activity(cfg, day)
        truth = synthetic.churn_probability(cfg, frame, day)
        frame["event_timestamp"] = midnight(day + timedelta(days=1))
        frame["churned"] = (rng.random(len(frame)) < truth).astype(np.int64)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def days_frame(days: int, rows_per_day: int = 3) -> pd.DataFrame:
    """Rows on `days` distinct prediction days, deliberately not in time order."""
    stamps = [midnight(START + timedelta(days=d)) for d in range(days)] * rows_per_day
    frame = pd.DataFrame({"event_timestamp": stamps, "value": range(len(stamps))})
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


# The time split ------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [3, 7, 20, 45])
def test_split_by_time_never_mixes_time(days):
    # Given rows on several prediction days, shuffled
    frame = days_frame(days)

    # When they are split by time
    split = splits.split_by_time(frame, "event_timestamp", 0.15, 0.15)

    # Then train is strictly before validation, which is strictly before holdout
    assert len(split.train) and len(split.validation) and len(split.holdout)
    assert split.train["event_timestamp"].max() < split.validation["event_timestamp"].min()
    assert split.validation["event_timestamp"].max() < split.holdout["event_timestamp"].min()


def test_split_by_time_puts_every_row_in_exactly_one_split():
    # Given 20 days of rows
    frame = days_frame(20, rows_per_day=5)

    # When they are split by time
    split = splits.split_by_time(frame, "event_timestamp", 0.15, 0.15)

    # Then the splits partition the rows: none lost, none repeated
    parts = [split.train.index, split.validation.index, split.holdout.index]
    assert sum(len(part) for part in parts) == len(frame)
    assert sorted(np.concatenate(parts)) == sorted(frame.index)
    # And the latest 3 days (15% of 20) are the holdout, the 3 before them validation
    assert split.holdout["event_timestamp"].nunique() == 3
    assert split.validation["event_timestamp"].nunique() == 3
    assert split.train["event_timestamp"].nunique() == 14


@pytest.mark.parametrize("days", [1, 2])
def test_too_few_days_to_split_is_a_configuration_error(days):
    # Given fewer days than the three splits need
    frame = days_frame(days)

    # When / Then splitting them is refused, naming the day count
    with pytest.raises(ConfigurationError, match=f"{days} labelled days cannot be split"):
        splits.split_by_time(frame, "event_timestamp", 0.15, 0.15)


# Hyperparameters -----------------------------------------------------------------------------


def test_merge_hyperparameters_overrides_and_casts_without_touching_the_defaults():
    # Given the settings' defaults
    defaults = dict(load_project("demo").model.hyperparameters)
    before = dict(defaults)

    # When a run overrides two of them (the integer as JSON may give it, 50.0)
    merged = fitting.merge_hyperparameters(defaults, {"n_estimators": 50.0, "learning_rate": 0.3})

    # Then the overrides win, as their declared types, and the rest are kept
    assert merged == {**before, "n_estimators": 50, "learning_rate": 0.3}
    assert isinstance(merged["n_estimators"], int)
    assert defaults == before


def test_merge_hyperparameters_without_overrides_is_the_defaults():
    defaults = dict(load_project("demo").model.hyperparameters)

    assert fitting.merge_hyperparameters(defaults, None) == defaults


def test_unknown_hyperparameter_is_a_configuration_error():
    # Given an override with a typo
    # When / Then it is refused, naming the unknown name
    with pytest.raises(ConfigurationError, match="unknown hyperparameter 'n_estimator'"):
        fitting.merge_hyperparameters(
            dict(load_project("demo").model.hyperparameters), {"n_estimator": 5}
        )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"reg_lambda": float("inf")}, "hyperparameters.reg_lambda: must be a finite number"),
        ({"reg_lambda": float("nan")}, "hyperparameters.reg_lambda: must be a finite number"),
        ({"gamma": float("-inf")}, "hyperparameters.gamma: must be a finite number"),
        ({"min_child_weight": 1e308}, "hyperparameters.min_child_weight: must be a number in"),
        ({"max_depth": "abc"}, "hyperparameters.max_depth: must be an integer"),
        ({"n_estimators": "50"}, "hyperparameters.n_estimators: must be an integer"),
        ({"learning_rate": 0}, r"hyperparameters.learning_rate: must be a number in \(0, 1\]"),
    ],
)
def test_a_hyperparameter_out_of_its_bounds_is_refused_before_training(overrides, field):
    # The same check as the DAG's first task and the CLI: nothing reaches XGBoost
    with pytest.raises(ConfigurationError, match=field):
        fitting.merge_hyperparameters(dict(load_project("demo").model.hyperparameters), overrides)


def test_defaults_out_of_bounds_are_refused_too():
    defaults = {**load_project("demo").model.hyperparameters, "reg_lambda": float("inf")}

    with pytest.raises(ConfigurationError, match=r"model\.hyperparameters\.reg_lambda"):
        fitting.merge_hyperparameters(defaults, {"max_depth": 3})


def test_the_hyperparameters_are_the_contracts():
    assert fitting.HYPERPARAMETERS is contracts.HYPERPARAMETER_BOUNDS


# Feature spec --------------------------------------------------------------------------------


def test_feature_spec_puts_text_columns_in_categorical_and_excludes_keys_and_label():
    # Given a frame with keys, a label, text columns of three dtypes and numeric columns
    frame = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "event_timestamp": [midnight(START)] * 2,
            "plan": ["basic", "premium"],
            "sessions": [1, 2],
            "region": pd.Series(["eu", "na"], dtype="category"),
            "usage_minutes": [1.5, 2.5],
            "tier": pd.Series(["a", "b"], dtype="string"),
            "churned": [0, 1],
        }
    )

    # When the feature spec is derived
    spec = splits.feature_spec(frame, KEYS)

    # Then text columns are categorical, numbers numeric, and keys and label are not features
    assert spec.categorical == ["plan", "region", "tier"]
    assert spec.numeric == ["sessions", "usage_minutes"]
    assert spec.columns == ["plan", "region", "tier", "sessions", "usage_minutes"]


# Metrics -------------------------------------------------------------------------------------


def test_calibration_error_is_zero_when_every_bin_is_calibrated():
    # Given scores of 0.25 where 1 in 4 churned and 0.75 where 3 in 4 churned
    scores = np.array([0.25] * 4 + [0.75] * 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])

    # Then the observed rate matches the score in every bin
    assert model_metrics.calibration_error(labels, scores) == pytest.approx(0.0)


def test_calibration_error_is_the_weighted_gap_between_rate_and_score():
    # Given over-confident scores: 0.9 where half churned, 0.1 where none did
    scores = np.array([0.9, 0.9, 0.1, 0.1])
    labels = np.array([1, 0, 0, 0])

    # Then the error is the row-weighted mean gap: (2 * 0.4 + 2 * 0.1) / 4
    assert model_metrics.calibration_error(labels, scores) == pytest.approx(0.25)


def test_calibration_error_counts_a_score_of_one_in_the_last_bin():
    assert model_metrics.calibration_error(np.array([1, 1]), np.array([1.0, 1.0])) == pytest.approx(
        0.0
    )
    assert model_metrics.calibration_error(np.array([0, 0]), np.array([1.0, 1.0])) == pytest.approx(
        1.0
    )


def test_classification_metrics_has_every_metric_the_gate_reads():
    # Given perfectly ranked scores
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9])

    # When metrics are computed
    metrics = model_metrics.classification_metrics(labels, scores)

    # Then every metric is a plain float, and the ranking metrics are perfect
    assert set(metrics) == METRICS == set(contracts.GATE_METRIC_RANGES)
    assert all(type(value) is float for value in metrics.values())
    assert metrics["roc_auc"] == 1.0
    assert metrics["pr_auc"] == 1.0
    assert 0.0 < metrics["log_loss"] < 0.3
    assert metrics["brier"] == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)


# Fingerprint ---------------------------------------------------------------------------------


def test_fingerprint_is_stable_for_the_same_rows_and_values():
    frame = labelled_days(SyntheticSettings(customers=50, start_date=START), days=2)

    assert registration.fingerprint(frame) == registration.fingerprint(frame.copy())
    # The index is not content: a re-indexed copy has the same fingerprint.
    assert registration.fingerprint(frame) == registration.fingerprint(
        frame.set_axis(frame.index + 1000)
    )


def test_fingerprint_changes_when_one_value_changes():
    frame = labelled_days(SyntheticSettings(customers=50, start_date=START), days=2)
    changed = frame.copy()
    changed.loc[17, "sessions"] += 1

    assert registration.fingerprint(changed) != registration.fingerprint(frame)


# Model behaviour -----------------------------------------------------------------------------

WORLD = SyntheticSettings(customers=500, start_date=START)


@pytest.fixture(scope="module")
def model():
    """A model fitted like `train_and_register` fits it, on 10 days of 500 customers."""
    frame = labelled_days(WORLD, days=10)
    settings = TrainingSettings()
    spec = splits.feature_spec(frame, KEYS)
    split = splits.split_by_time(
        frame, "event_timestamp", settings.validation_share, settings.holdout_share
    )
    fitted = fitting.fit(
        split, spec, "churned", load_project("demo").model.hyperparameters, settings.random_seed
    )
    return fitted, spec, split.holdout.sample(n=400, random_state=5)


def churn_scores(fitted, spec, frame: pd.DataFrame) -> np.ndarray:
    return fitted.predict_proba(frame[spec.columns])[:, 1]


def test_the_model_ranks_churners_above_stayers_on_the_holdout_days(model):
    fitted, spec, holdout = model

    auc = model_metrics.classification_metrics(
        holdout["churned"].to_numpy(), churn_scores(fitted, spec, holdout)
    )["roc_auc"]

    assert auc > 0.7


@pytest.mark.parametrize(
    ("feature", "push"),
    [
        ("payment_failures", 2),
        ("support_tickets", 2),
        ("days_since_last_login", 14),
        ("tenure_days", 1_500),
    ],
)
def test_a_feature_pushed_the_way_the_truth_says_moves_the_score_the_same_way(model, feature, push):
    # Given held-out customers, and the same customers with one feature pushed
    fitted, spec, sample = model
    pushed = sample.copy()
    pushed[feature] = pushed[feature] + push

    # When the hidden ground truth and the model score both
    day = START
    truth_shift = np.mean(
        synthetic.churn_probability(WORLD, pushed, day)
        - synthetic.churn_probability(WORLD, sample, day)
    )
    model_shift = np.mean(churn_scores(fitted, spec, pushed) - churn_scores(fitted, spec, sample))

    # Then the model moves the churn probability the same way as the truth, on average
    expected_direction = -1.0 if feature == "tenure_days" else 1.0
    assert np.sign(truth_shift) == expected_direction
    assert np.sign(model_shift) == expected_direction
    assert abs(model_shift) > 0.002


@pytest.mark.parametrize(("column", "unseen"), [("plan", "platinum"), ("region", "mars")])
def test_an_unseen_category_still_scores_a_valid_probability(model, column, unseen):
    # Given customers whose category never occurred in training
    fitted, spec, sample = model
    strange = sample.head(20).copy()
    strange[column] = unseen

    # When they are scored
    scores = churn_scores(fitted, spec, strange)

    # Then each gets a probability (the category is treated as missing), not an exception
    assert scores.shape == (20,)
    assert np.isfinite(scores).all()
    assert ((scores >= 0.0) & (scores <= 1.0)).all()
