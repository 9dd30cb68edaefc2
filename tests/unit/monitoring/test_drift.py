"""Drift metrics, levels and the decision, on hand-made and generated data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp, wasserstein_distance

from pipelines import contracts
from pipelines.jobs import drift_monitor
from pipelines.monitoring import drift, profiling
from pipelines.settings import DriftSettings, load_settings

# Profile-based normed Wasserstein vs scipy on raw rows, in reference standard deviations.
# Measured worst case on these samples: 0.002 (skewed, capped), 0 (counts: exact knots).
WASSERSTEIN_TOLERANCE = 0.003


def _profile(frame: pd.DataFrame, categorical: list[str]) -> dict:
    return profiling.reference_profile(
        frame, categorical, np.linspace(0, 1, 200), {"roc_auc": 0.8}, 10, DriftSettings()
    )


def _samples(shift: float, rows: int, seed: int) -> dict[str, np.ndarray]:
    """Continuous, skewed, capped, gapped and count features; `shift` scales them up."""
    rng = np.random.default_rng(seed)
    engagement = rng.normal(0, 1, rows)
    sessions = rng.poisson(np.exp(0.9 + 0.6 * engagement) * (1 + shift))
    idle = np.minimum(rng.geometric(np.clip(1 / (1 + np.exp(-engagement - 0.5)), 0.02, 1)), 90)
    price = rng.choice([19.0, 39.0, 69.0], size=rows, p=[0.5, 0.35, 0.15])
    return {
        "price_bands": np.round(price * rng.uniform(0.8, 1.0, rows) * (1 + shift / 10), 2),
        "normal": rng.normal(shift, 1, rows),
        "skewed_capped": np.minimum(sessions * rng.gamma(2, 9, rows) * (1 + shift), 1440).round(2),
        "counts": sessions.astype(float),
        "mostly_zero": np.where(sessions > 0, 0, idle).astype(float),
        "uniform_integers": rng.integers(0, 2_000, rows) + round(shift * 100.0),
    }


def _wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    profile = profiling.numeric_profile(pd.Series(reference), 10, DriftSettings())
    value = drift.wasserstein_normed(profile, np.asarray(current, dtype=float))
    assert value is not None
    return value


def test_psi_is_zero_for_identical_histograms_and_grows_with_shift():
    same = drift.psi(np.array([10, 20, 30]), np.array([10, 20, 30]))
    small = drift.psi(np.array([10, 20, 30]), np.array([12, 20, 28]))
    large = drift.psi(np.array([10, 20, 30]), np.array([30, 20, 10]))

    assert same == pytest.approx(0.0, abs=1e-12)
    assert 0 < small < large


def test_binned_ks_is_close_to_scipy_on_fine_bins():
    rng = np.random.default_rng(0)
    reference, current = rng.normal(0, 1, 20_000), rng.normal(0.3, 1, 20_000)
    profile = profiling.numeric_profile(pd.Series(reference), bins=100, drift=DriftSettings())

    binned = drift.binned_ks(np.asarray(profile["counts"]), drift.numeric_counts(profile, current))

    assert binned == pytest.approx(ks_2samp(reference, current).statistic, abs=0.02)


@pytest.mark.parametrize("shift", [0.0, 0.6])
@pytest.mark.parametrize("rows", [5_000, 200_000])
def test_wasserstein_from_the_profile_matches_scipy_on_raw_rows(shift, rows):
    reference, current = _samples(0.0, rows, seed=3), _samples(shift, rows, seed=4)

    for name, values in reference.items():
        expected = wasserstein_distance(values, current[name]) / values.std()

        assert _wasserstein(values, current[name]) == pytest.approx(
            expected, abs=WASSERSTEIN_TOLERANCE
        ), name


def test_wasserstein_stays_below_warning_without_drift():
    reference, current = _samples(0.0, 5_000, seed=5), _samples(0.0, 5_000, seed=6)
    warning = DriftSettings().numeric_wasserstein.warning

    scores = {name: _wasserstein(values, current[name]) for name, values in reference.items()}

    assert max(scores.values()) < warning, scores


def test_a_shift_of_a_rate_by_60_percent_is_flagged_by_wasserstein(settings):
    # Given the bench's injected drift: session rate x1.6, so usage too
    reference, current = _samples(0.0, 5_000, seed=7), _samples(0.6, 5_000, seed=8)
    profile = _profile(pd.DataFrame(reference), [])

    # When
    results = {f.feature: f for f in drift.feature_drift(profile, pd.DataFrame(current), settings)}

    # Then
    alert = settings.drift.numeric_wasserstein.alert
    for name in ("normal", "skewed_capped", "counts"):
        assert results[name].wasserstein >= alert and results[name].level == "alert", name


def test_a_numeric_level_is_the_worse_of_psi_and_wasserstein(settings):
    # Given a shift of a tenth of a standard deviation: Wasserstein alerts, PSI does not
    rng = np.random.default_rng(9)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 50_000)})
    today = pd.DataFrame({"x": rng.normal(0.12, 1, 50_000)})

    (result,) = drift.feature_drift(_profile(reference, []), today, settings)

    assert result.score < settings.drift.numeric_psi.warning
    assert result.wasserstein >= settings.drift.numeric_wasserstein.alert
    assert result.level == "alert"


def test_below_its_row_floor_wasserstein_is_reported_but_sets_no_level(settings):
    # Given a night smaller than the Wasserstein row floor (but above the general guard)
    rng = np.random.default_rng(11)
    rows = settings.drift.numeric_wasserstein_min_rows - 1
    reference = pd.DataFrame({"x": rng.normal(0, 1, 50_000)})
    today = pd.DataFrame({"x": rng.normal(0.12, 1, rows)})

    (result,) = drift.feature_drift(_profile(reference, []), today, settings)

    assert result.wasserstein >= settings.drift.numeric_wasserstein.alert
    assert result.level == drift.level_of(
        result.score, settings.drift.numeric_psi.warning, settings.drift.numeric_psi.alert
    )


def test_categorical_profile_names_missing_values_and_counts_like_strings():
    values = pd.Series(["a", None, "b", np.nan, "a", 1, "1"], dtype=object)

    assert profiling.categorical_profile(values)["counts"] == {
        "a": 2,
        "<missing>": 2,
        "1": 2,
        "b": 1,
    }


def test_a_profile_without_quantile_function_falls_back_to_psi(settings):
    rng = np.random.default_rng(10)
    profile = _profile(pd.DataFrame({"x": rng.normal(0, 1, 5_000)}), [])
    profile["features"]["x"].pop("quantile_function")

    (result,) = drift.feature_drift(profile, pd.DataFrame({"x": rng.normal(0, 1, 5_000)}), settings)

    assert result.wasserstein is None and result.level == "ok"


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
    assert drift.decide(drifted, "too_few_rows", None, settings) == []


def _realized(version: str, roc_auc: float, holdout_roc_auc: float, settings, rows=1_000):
    """A version's realized performance, its level judged as the monitor judges it."""
    drop, level = drift.performance_drop(roc_auc, holdout_roc_auc, settings)
    return contracts.RealizedPerformance(
        version,
        ["2026-01-15"],
        rows,
        {"roc_auc": roc_auc},
        {"roc_auc": holdout_roc_auc},
        drop,
        level,
    )


@pytest.mark.parametrize(
    ("scoring_version", "reason"),
    [
        (
            "1",
            "realized ROC AUC of version 1 fell 0.100 below its holdout's, beyond tolerance "
            "(1000 labelled predictions)",
        ),
        ("2", None),
        ("3", None),
    ],
    ids=["its-own-drop", "an-older-versions-drop", "no-labels-yet"],
)
def test_a_realized_drop_is_judged_per_version_and_alarms_for_the_scoring_one(
    settings, scoring_version, reason
):
    # Given labels judging version 1 (0.70 against 0.80 on its own holdout: beyond the
    # alert level) and version 2 (0.70 against 0.72: within tolerance)
    performance = [_realized("1", 0.70, 0.80, settings), _realized("2", 0.70, 0.72, settings)]
    assert [item.level for item in performance] == ["alert", "ok"]

    # When the night was scored by one version, then only that version's drop can alarm:
    # retraining replaces the model that scores now, not one already replaced
    scoring = drift.scoring_performance(performance, scoring_version)
    reasons = drift.decide([], "ok", scoring, settings)

    assert reasons == ([] if reason is None else [reason])


def _report(alarm: bool, day: str = "2026-02-15") -> dict:
    return {
        "alarm": alarm,
        "day": day,
        "reasons": ["2 features drifted: x (0.4), y (0.3)"] if alarm else [],
        "features": [
            _feature("x", 0.4, 0.52, "alert"),
            _feature("y", 0.3, None, "alert"),
            _feature("z", 0.01, 0.01, "ok"),
        ],
        "prediction_psi": 0.05,
        "model_version": "3",
        "rows": 1000,
        "prediction_level": "ok",
        "performance": [],
        "performance_level": "no_labels",
    }


def _feature(name: str, score: float, wasserstein: float | None, level: str) -> dict:
    kind = "categorical" if wasserstein is None else "numeric"
    return {
        "feature": name,
        "kind": kind,
        "score": score,
        "distance": score,
        "wasserstein": wasserstein,
        "unseen_share": 0.0,
        "level": level,
    }


NOW = datetime(2026, 2, 16, 3, tzinfo=UTC)


def _request(night: str, made: datetime = NOW - timedelta(days=30)) -> SimpleNamespace:
    """An earlier `retrain_request` asset event, as the task's inlet events give it."""
    return SimpleNamespace(extra={"date": night}, timestamp=made)


def test_retrain_request_carries_its_payload(settings):
    request = drift_monitor.retrain_request(_report(True), [], 0)

    assert request == {
        "reason": "drift on 2026-02-15: 2 features drifted: x (0.4), y (0.3)",
        "date": "2026-02-15",
        "drifted_features": {
            "x": {"score": 0.4, "wasserstein": 0.52},
            "y": {"score": 0.3, "wasserstein": None},
        },
        "prediction_psi": 0.05,
        "model_version": "3",
    }


def test_no_request_without_alarm_while_training_or_within_the_cooldown(settings, monkeypatch):
    monkeypatch.setenv("MLOPS_DRIFT__RETRAIN_COOLDOWN", "P7D")
    assert load_settings().drift.retrain_cooldown.days == 7

    assert drift_monitor.retrain_request(_report(False), [], 0) is None
    assert drift_monitor.retrain_request(_report(True), [], 1) is None
    assert drift_monitor.retrain_request(_report(True), [_request("2026-02-10")], 0, NOW) is None
    assert (
        drift_monitor.retrain_request(_report(True), [_request("2026-02-08")], 0, NOW) is not None
    )


def test_a_backfilled_night_requests_nothing_near_a_later_request(settings):
    # Given retraining requested on a later night, a night scored out of order (a backfill)
    # within the cooldown of it asks for none; one far from every request does
    assert drift_monitor.retrain_request(_report(True), [_request("2026-02-20")], 0, NOW) is None
    far = [_request("2026-01-01"), _request("2026-03-01")]
    assert drift_monitor.retrain_request(_report(True), far, 0, NOW) is not None


def test_a_backfill_of_drifted_nights_requests_retraining_once(settings):
    # Given a request made an hour ago for a night months away (a backfill's first alarm)
    earlier = [_request("2025-06-01", NOW - timedelta(hours=1))]

    # Then no other night asks again within the cooldown of when that one was made
    assert drift_monitor.retrain_request(_report(True), earlier, 0, NOW) is None
    assert (
        drift_monitor.retrain_request(_report(True), earlier, 0, NOW + timedelta(days=8))
        is not None
    )


def test_a_long_reason_fits_the_training_form(settings):
    report = _report(True) | {"reasons": ["x" * 2000]}

    reason = drift_monitor.retrain_request(report, [], 0)["reason"]

    assert len(reason) == contracts.MAX_REASON_CHARS and reason.endswith("…")


def test_the_projects_drift_policy_ignores_some_features_and_expects_others_to_grow(
    tmp_path, monkeypatch
):
    # Given a project whose `normal` feature only grows with time and `counts` is ignored
    import yaml

    from pipelines.project import PROJECTS_ROOT

    document = yaml.safe_load((PROJECTS_ROOT / "demo" / "project.yaml").read_text())
    document["source"]["columns"] = {name: {"type": "float64"} for name in _samples(0.0, 10, 1)}
    document["drift"] = {"features": {"normal": "monotone", "counts": "ignored"}}
    (tmp_path / "project.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    monkeypatch.setenv("MLOPS_PROJECT", str(tmp_path))
    settings = load_settings()
    profile = _profile(pd.DataFrame(_samples(0.0, 5_000, 1)), [])

    # When a night has shifted every feature
    results = drift.feature_drift(profile, pd.DataFrame(_samples(1.0, 5_000, 2)), settings)
    levels = {item.feature: item.level for item in results}

    # Then the ignored one is not measured, the monotone one is expected, the rest alarm
    assert "counts" not in levels
    assert levels["normal"] == "expected"
    assert levels["skewed_capped"] == "alert"
