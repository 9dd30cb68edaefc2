"""The synthetic world: deterministic, shaped like the contract, with drift and fault knobs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.demo import synthetic, worlds
from pipelines.demo.synthetic import ACTIVITY_SCHEMA, LABEL_SCHEMA, Fault
from pipelines.io import lake
from pipelines.settings import SyntheticSettings, load_settings

START = date(2026, 1, 1)


def world(**changes) -> SyntheticSettings:
    return SyntheticSettings(**{"customers": 300, "start_date": START, **changes})


def midnight(day: date) -> pd.Timestamp:
    return pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))


def read_activity(settings, day: date) -> pd.DataFrame:
    path = lake.partition_file(settings.raw_root, settings.project.source.dataset, day)
    return pq.read_table(path).to_pandas()


# Determinism ---------------------------------------------------------------------------------


def test_same_seed_and_day_give_the_same_frame():
    first = synthetic.activity(world(), START + timedelta(days=3))
    again = synthetic.activity(world(), START + timedelta(days=3))

    pd.testing.assert_frame_equal(first, again)


def test_a_world_started_on_another_date_is_the_same_world_moved_in_time():
    # Given the default world and the same world started 300 days later (the demo's world
    # always ends last night)
    shift = timedelta(days=300)
    moved = world(start_date=START + shift)
    for offset in (0, 5, 40):
        day = START + timedelta(days=offset)

        # Then every day's activity and labels are the same, only their times moved
        here, there = synthetic.activity(world(), day), synthetic.activity(moved, day + shift)
        assert (there["event_timestamp"] - here["event_timestamp"] == shift).all()
        columns = [c for c in here.columns if c != "event_timestamp"]
        pd.testing.assert_frame_equal(here[columns], there[columns])
        labels = synthetic.labels(world(), day)
        moved_labels = synthetic.labels(moved, day + shift)
        pd.testing.assert_series_equal(labels["churned"], moved_labels["churned"])


def test_a_day_does_not_depend_on_generating_other_days_first():
    alone = synthetic.activity(world(), START + timedelta(days=2))
    for offset in range(2):
        synthetic.activity(world(), START + timedelta(days=offset))
    after_others = synthetic.activity(world(), START + timedelta(days=2))

    pd.testing.assert_frame_equal(alone, after_others)


def test_different_days_give_different_frames():
    monday = synthetic.activity(world(), START)
    tuesday = synthetic.activity(world(), START + timedelta(days=1))

    assert (monday["customer_id"] == tuesday["customer_id"]).all()
    assert not monday["event_timestamp"].equals(tuesday["event_timestamp"])
    assert not monday["sessions"].equals(tuesday["sessions"])
    assert not monday["usage_minutes"].equals(tuesday["usage_minutes"])
    # Static attributes of a customer do not change from day to day.
    assert monday["plan"].equals(tuesday["plan"])
    assert (tuesday["tenure_days"] - monday["tenure_days"] == 1).all()


def test_different_seeds_give_different_frames():
    one = synthetic.activity(world(seed=1), START)
    two = synthetic.activity(world(seed=2), START)

    assert not one["usage_minutes"].equals(two["usage_minutes"])


def test_landing_the_same_day_twice_writes_the_same_bytes(settings, tmp_path, monkeypatch):
    first = synthetic.land_day(settings, START).read_bytes()
    monkeypatch.setenv("MLOPS_STATE_ROOT", str(tmp_path / "other"))
    elsewhere = load_settings()

    second = synthetic.land_day(elsewhere, START).read_bytes()

    assert first == second


# Shape of one day ----------------------------------------------------------------------------


def test_one_row_per_customer():
    frame = synthetic.activity(world(customers=777), START)

    assert len(frame) == 777
    assert frame["customer_id"].is_unique
    assert frame["customer_id"].min() >= 1


def test_timestamps_lie_within_the_day():
    day = START + timedelta(days=4)
    frame = synthetic.activity(world(), day)

    assert str(frame["event_timestamp"].dt.tz) == "UTC"
    assert frame["event_timestamp"].min() >= midnight(day)
    assert frame["event_timestamp"].max() < midnight(day + timedelta(days=1))


def test_values_lie_within_the_contract_ranges():
    frame = synthetic.activity(world(customers=5_000), START)

    assert set(frame["plan"]) <= set(synthetic.PLAN_PRICES)
    assert set(frame["region"]) <= set(synthetic.REGIONS)
    assert frame["usage_minutes"].between(0, 1440).all()
    assert frame["monthly_charge"].between(0, 1000).all()
    assert (frame[list(synthetic.NUMERIC_FEATURES)] >= 0).all().all()
    assert not frame.isna().any().any()


def test_landed_activity_matches_the_schema(settings):
    path = synthetic.land_day(settings, START)

    assert path == lake.partition_file(settings.raw_root, "activity", START)
    assert pq.read_schema(path).remove_metadata().equals(ACTIVITY_SCHEMA)
    assert pq.read_metadata(path).num_rows == settings.synthetic.customers


def test_a_project_with_text_ids_gets_the_same_customers_zero_padded(tmp_path, monkeypatch):
    # Given the demo's project with text customer ids
    monkeypatch.setenv("MLOPS_PROJECT", str(worlds.text_id_project(tmp_path / "project")))
    monkeypatch.setenv("MLOPS_STATE_ROOT", str(tmp_path / "state"))
    monkeypatch.setenv("MLOPS_SYNTHETIC__LABEL_DELAY_DAYS", "0")
    settings = load_settings()

    # When a day lands
    synthetic.land_day(settings, START)

    # Then its activity and labels name the generator's customers as zero-padded text
    expected = [f"{n:010d}" for n in synthetic.activity(settings.synthetic, START)["customer_id"]]
    for dataset in ("activity", "labels"):
        table = pq.read_table(lake.partition_file(settings.raw_root, dataset, START))
        assert table.schema.field("customer_id").type == pa.string()
        assert table.column("customer_id").to_pylist() == expected


# Labels --------------------------------------------------------------------------------------


def test_labels_do_not_land_before_the_delay_has_passed(settings):
    delay = settings.synthetic.label_delay_days
    last_too_early = START + timedelta(days=delay - 1)

    synthetic.land_day(settings, last_too_early)

    assert lake.partition_days(settings.raw_root, "activity") == [last_too_early]
    assert lake.partition_days(settings.raw_root, "labels") == []
    assert synthetic.labels(settings.synthetic, last_too_early).empty


def test_labels_land_once_the_delay_has_passed(settings):
    delay = settings.synthetic.label_delay_days
    landing_day = START + timedelta(days=delay)

    synthetic.land_day(settings, landing_day)

    path = lake.partition_file(settings.raw_root, "labels", landing_day)
    assert pq.read_schema(path).remove_metadata().equals(LABEL_SCHEMA)
    table = pq.read_table(path).to_pandas()
    assert len(table) == settings.synthetic.customers
    assert (
        table["customer_id"].tolist()
        == synthetic.activity(settings.synthetic, START)["customer_id"].tolist()
    )
    # The label of START is predicted at the midnight after START, available on landing.
    assert (table["event_timestamp"] == midnight(START + timedelta(days=1))).all()
    assert (table["label_available_at"] == midnight(landing_day)).all()
    assert set(table["churned"]) <= {0, 1}


def test_empty_labels_still_have_the_label_columns():
    empty = synthetic.labels(world(), START)

    assert empty.empty
    assert list(empty.columns) == LABEL_SCHEMA.names


def test_labels_are_deterministic():
    landing_day = START + timedelta(days=35)

    pd.testing.assert_frame_equal(
        synthetic.labels(world(), landing_day), synthetic.labels(world(), landing_day)
    )


def test_churn_rate_is_plausible():
    cfg = world(customers=20_000)

    churned = synthetic.labels(cfg, START + timedelta(days=cfg.label_delay_days))["churned"]

    assert len(churned) == 20_000
    assert 0.05 <= churned.mean() <= 0.30


def test_churn_follows_the_hidden_drivers():
    cfg = world(customers=20_000)
    frame = synthetic.activity(cfg, START)
    probability = synthetic.churn_probability(cfg, frame, START)

    assert ((probability > 0) & (probability < 1)).all()
    with_failures = probability[frame["payment_failures"].to_numpy() > 0].mean()
    without = probability[frame["payment_failures"].to_numpy() == 0].mean()
    assert with_failures > without


# Drift ---------------------------------------------------------------------------------------


def test_covariate_drift_scales_the_named_feature_and_leaves_others_alone():
    day = START + timedelta(days=5)
    base = synthetic.activity(world(customers=20_000), day)
    drifted = synthetic.activity(
        world(
            customers=20_000,
            drift_start=day,
            drift_features=("usage_minutes",),
            drift_magnitude=0.5,
        ),
        day,
    )

    ratio = drifted["usage_minutes"].mean() / base["usage_minutes"].mean()
    # Heavy users saturate at 1440 minutes, so the mean grows slightly less than 1.5x.
    assert 1.4 <= ratio <= 1.5 + 1e-3
    others = [column for column in base.columns if column != "usage_minutes"]
    pd.testing.assert_frame_equal(base[others], drifted[others])


def test_covariate_drift_on_sessions_scales_their_rate():
    day = START + timedelta(days=5)
    base = synthetic.activity(world(customers=20_000), day)
    drifted = synthetic.activity(
        world(customers=20_000, drift_start=day, drift_features=("sessions",), drift_magnitude=1.0),
        day,
    )

    ratio = drifted["sessions"].mean() / base["sessions"].mean()
    assert ratio == pytest.approx(2.0, rel=0.05)
    static = ["customer_id", "event_timestamp", "plan", "region", "tenure_days", "monthly_charge"]
    pd.testing.assert_frame_equal(base[static], drifted[static])


def test_no_covariate_drift_before_it_starts():
    day = START + timedelta(days=2)
    cfg = world(drift_start=day + timedelta(days=1), drift_magnitude=2.0)

    pd.testing.assert_frame_equal(synthetic.activity(cfg, day), synthetic.activity(world(), day))
    assert not synthetic.activity(cfg, day + timedelta(days=1)).equals(
        synthetic.activity(world(), day + timedelta(days=1))
    )


def test_drift_of_an_unknown_feature_is_an_error():
    with pytest.raises(ValueError, match="usage_minutez"):
        synthetic.activity(world(drift_start=START, drift_features=("usage_minutez",)), START)


def test_concept_drift_changes_churn_probability_only_after_it_starts():
    shift = START + timedelta(days=3)
    base, shifted = world(customers=2_000), world(customers=2_000, concept_drift_start=shift)

    for offset in range(6):
        day = START + timedelta(days=offset)
        frame = synthetic.activity(base, day)
        # Concept drift moves the label function, never the features.
        pd.testing.assert_frame_equal(frame, synthetic.activity(shifted, day))
        before = synthetic.churn_probability(base, frame, day)
        after = synthetic.churn_probability(shifted, frame, day)
        if day < shift:
            np.testing.assert_array_equal(before, after)
        else:
            assert not np.allclose(before, after), day


def test_concept_drift_strength_zero_changes_nothing():
    day = START + timedelta(days=1)
    frame = synthetic.activity(world(), day)
    off = world(concept_drift_start=START, concept_drift_strength=0.0)

    np.testing.assert_array_equal(
        synthetic.churn_probability(world(), frame, day),
        synthetic.churn_probability(off, frame, day),
    )


# Faults --------------------------------------------------------------------------------------


def _defect(fault: Fault, clean: pd.DataFrame, broken: pd.DataFrame, day: date) -> bool:
    next_midnight = midnight(day + timedelta(days=1))
    checks = {
        Fault.MISSING_COLUMN: lambda: (
            "usage_minutes" not in broken.columns and len(broken.columns) == len(clean.columns) - 1
        ),
        Fault.WRONG_DTYPE: lambda: pa.types.is_string(
            pa.Table.from_pandas(broken).schema.field("sessions").type
        ),
        Fault.NULLS: lambda: 0 < broken["usage_minutes"].isna().sum() < len(broken),
        Fault.OUT_OF_RANGE: lambda: (broken["usage_minutes"] < 0).any(),
        Fault.UNKNOWN_CATEGORY: lambda: "platinum" in set(broken["plan"]),
        Fault.DUPLICATE_KEYS: lambda: (
            len(broken) > len(clean) and broken.duplicated(["customer_id", "event_timestamp"]).any()
        ),
        Fault.TIMESTAMPS_OUTSIDE_DAY: lambda: (broken["event_timestamp"] >= next_midnight).any(),
        Fault.EMPTY: lambda: len(broken) == 0 and list(broken.columns) == list(clean.columns),
        Fault.EXTRA_COLUMN: lambda: (
            list(broken.columns) == [*clean.columns, "promo_code"]
            and (broken["promo_code"] == "WINTER").any()
        ),
    }
    return checks[fault]()


@pytest.mark.parametrize("fault", list(Fault), ids=str)
def test_each_fault_produces_the_defect_it_names(settings, fault):
    day = START + timedelta(days=2)
    clean = synthetic.activity(settings.synthetic, day)
    target = lake.partition_file(settings.raw_root, "activity", day)

    landed = synthetic.land_day(settings, day, fault)

    if fault is Fault.NOT_LANDED:
        assert landed is None
        assert not target.exists()
        assert not target.parent.exists()
        return
    assert landed == target
    if fault is Fault.CORRUPT_FILE:
        assert target.stat().st_size > 0
        with pytest.raises(pa.ArrowException):
            pq.read_table(target)
        return
    broken = pq.read_table(target).to_pandas()
    assert _defect(fault, clean, broken, day)
    # The clean frame is not a false positive of the check.
    assert fault is Fault.EMPTY or not _defect(fault, clean, clean, day)


@pytest.mark.parametrize(
    "fault",
    [Fault.NULLS, Fault.OUT_OF_RANGE, Fault.UNKNOWN_CATEGORY, Fault.TIMESTAMPS_OUTSIDE_DAY],
    ids=str,
)
def test_value_faults_touch_only_their_column_and_some_rows(fault):
    day = START + timedelta(days=2)
    clean = synthetic.activity(world(), day)

    broken = synthetic.inject_fault(clean, fault, day, world())

    changed = [column for column in clean.columns if not clean[column].equals(broken[column])]
    assert len(changed) == 1
    differs = (clean[changed[0]] != broken[changed[0]]).sum()
    assert 0 < differs < len(clean)


def test_inject_fault_does_not_modify_its_input():
    clean = synthetic.activity(world(), START)
    before = clean.copy()

    for fault in Fault:
        synthetic.inject_fault(clean, fault, START, world())

    pd.testing.assert_frame_equal(clean, before)


def test_labels_still_land_when_the_activity_does_not(settings):
    landing_day = START + timedelta(days=settings.synthetic.label_delay_days)

    assert synthetic.land_day(settings, landing_day, Fault.NOT_LANDED) is None

    assert lake.partition_days(settings.raw_root, "labels") == [landing_day]
    assert lake.partition_days(settings.raw_root, "activity") == []


def test_calendar_lists_consecutive_days():
    assert synthetic.days(world(days=3)) == [START, date(2026, 1, 2), date(2026, 1, 3)]


# Scale ---------------------------------------------------------------------------------------


def test_one_hundred_thousand_customers_for_one_day(settings, monkeypatch):
    monkeypatch.setenv("MLOPS_SYNTHETIC__CUSTOMERS", "100000")
    big = load_settings()

    path = synthetic.land_day(big, START)

    metadata = pq.read_metadata(path)
    assert metadata.num_rows == 100_000
    ids = pq.read_table(path, columns=["customer_id"]).column("customer_id").to_numpy()
    assert len(np.unique(ids)) == 100_000
