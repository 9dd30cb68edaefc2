"""Drift metrics, levels and the decision, on hand-made and generated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from pipelines import drift, jobs
from pipelines.settings import load_settings


def _profile(frame: pd.DataFrame, categorical: list[str]) -> dict:
    return drift.reference_profile(frame, categorical, np.linspace(0, 1, 200), {"roc_auc": 0.8}, 10)


def test_psi_is_zero_for_identical_histograms_and_grows_with_shift():
    same = drift.psi(np.array([10, 20, 30]), np.array([10, 20, 30]))
    small = drift.psi(np.array([10, 20, 30]), np.array([12, 20, 28]))
    large = drift.psi(np.array([10, 20, 30]), np.array([30, 20, 10]))

    assert same == pytest.approx(0.0, abs=1e-12)
    assert 0 < small < large


def test_binned_ks_is_close_to_scipy_on_fine_bins():
    rng = np.random.default_rng(0)
    reference, current = rng.normal(0, 1, 20_000), rng.normal(0.3, 1, 20_000)
    profile = drift.numeric_profile(pd.Series(reference), bins=100)

    binned = drift.binned_ks(np.asarray(profile["counts"]), drift.numeric_counts(profile, current))

    assert binned == pytest.approx(ks_2samp(reference, current).statistic, abs=0.02)


def test_categorical_drift_counts_unseen_categories():
    distance, unseen = drift.categorical_drift({"a": 50, "b": 50}, {"a": 40, "b": 40, "c": 20})

    assert unseen == pytest.approx(0.2)
    assert distance > 0
    assert drift.categorical_drift({"a": 5}, {"a": 7}) == (pytest.approx(0.0), 0.0)


@pytest.mark.parametrize(("value", "level"), [(0.05, "ok"), (0.1, "warning"), (0.3, "alert")])
def test_levels(value, level):
    assert drift.level_of(value, 0.1, 0.25) == level


def test_shifted_features_alert_and_stable_ones_do_not(settings):
    rng = np.random.default_rng(1)
    reference = pd.DataFrame(
        {"x": rng.normal(0, 1, 5_000), "y": rng.normal(0, 1, 5_000), "c": ["a", "b"] * 2_500}
    )
    today = pd.DataFrame(
        {
            "x": rng.normal(1.0, 1, 5_000),
            "y": rng.normal(0, 1, 5_000),
            "c": ["a"] * 4_000 + ["z"] * 1_000,
        }
    )

    results = {
        f.feature: f for f in drift.feature_drift(_profile(reference, ["c"]), today, settings)
    }

    assert results["x"].level == "alert" and results["y"].level == "ok"
    assert results["c"].level == "alert" and results["c"].unseen_share == pytest.approx(0.2)


def test_tiny_samples_never_raise_alarms(settings):
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 5_000), "w": rng.normal(0, 1, 5_000)})
    today = pd.DataFrame({"x": rng.normal(5, 1, 20), "w": rng.normal(5, 1, 20)})

    results = drift.feature_drift(_profile(reference, []), today, settings)
    drifted = [f for f in results if f.level == "alert"]

    assert {f.level for f in results} == {"too_few_rows"}
    assert drift.decide(drifted, "too_few_rows", "no_labels", settings) == []


def _report(alarm: bool, day: str = "2026-02-15") -> dict:
    return {
        "alarm": alarm,
        "day": day,
        "reasons": ["2 features drifted: x (0.4), y (0.3)"] if alarm else [],
        "features": [
            {"feature": "x", "score": 0.4, "level": "alert"},
            {"feature": "y", "score": 0.3, "level": "alert"},
            {"feature": "z", "score": 0.01, "level": "ok"},
        ],
        "prediction_psi": 0.05,
        "model_version": "3",
    }


def test_retrain_request_carries_its_payload(settings):
    request = jobs.retrain_request(_report(True), None, 0)

    assert request == {
        "reason": "drift on 2026-02-15: 2 features drifted: x (0.4), y (0.3)",
        "date": "2026-02-15",
        "drifted_features": {"x": 0.4, "y": 0.3},
        "prediction_psi": 0.05,
        "model_version": "3",
    }


def test_no_request_without_alarm_while_training_or_within_the_cooldown(settings, monkeypatch):
    monkeypatch.setenv("MLOPS_DRIFT__RETRAIN_COOLDOWN", "P7D")
    assert load_settings().drift.retrain_cooldown.days == 7

    assert jobs.retrain_request(_report(False), None, 0) is None
    assert jobs.retrain_request(_report(True), None, 1) is None
    assert jobs.retrain_request(_report(True), "2026-02-10", 0) is None
    assert jobs.retrain_request(_report(True), "2026-02-08", 0) is not None
