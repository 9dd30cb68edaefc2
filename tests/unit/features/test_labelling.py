"""The point-in-time training set: no leakage from the future, the label window, its checks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipelines.demo import synthetic
from pipelines.demo.synthetic import ACTIVITY_SCHEMA, LABEL_SCHEMA
from pipelines.errors import ConfigurationError, ValidationFailedError
from pipelines.features import labelling
from pipelines.ingest import validation
from pipelines.io import feast_store, lake
from pipelines.settings import load_settings

T = pd.Timestamp(datetime(2026, 1, 10, tzinfo=UTC))  # a prediction time: midnight
HOUR = pd.Timedelta(hours=1)
FEATURES = [field.name for field in ACTIVITY_SCHEMA][2:]


def activity_row(customer_id: int, at: pd.Timestamp, sessions: int) -> dict:
    """One validated activity row; `sessions` marks which row a join picked."""
    return {
        "customer_id": customer_id,
        "event_timestamp": at,
        "plan": "standard",
        "region": "eu",
        "tenure_days": 400,
        "monthly_charge": 35.0,
        "sessions": sessions,
        "usage_minutes": 12.5,
        "payment_failures": 0,
        "support_tickets": 0,
        "days_since_last_login": 0,
    }


def publish_activity(settings, rows: list[dict]) -> None:
    """Write rows into the validated zone, each in the partition of its UTC day."""
    frame = pd.DataFrame(rows)
    for day, part in frame.groupby(frame["event_timestamp"].dt.date):
        lake.write_table_atomic(
            pa.Table.from_pandas(part, schema=ACTIVITY_SCHEMA, preserve_index=False),
            lake.partition_file(settings.validated_root, settings.project.source.dataset, day),
        )


def label_frame(rows: list[tuple[int, pd.Timestamp, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "event_timestamp", "churned"])
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


def joined(settings, labels: pd.DataFrame) -> pd.DataFrame:
    store = feast_store.apply_repo(settings)
    return labelling.training_set(settings, labels, store).set_index(
        ["customer_id", "event_timestamp"]
    )


# No leakage ----------------------------------------------------------------------------------


def test_a_label_gets_the_feature_row_from_before_its_time_never_the_one_after(settings):
    # Given a customer with a row an hour before the prediction time T (sessions=1)
    # and a row an hour after it (sessions=99), in the partitions of their days
    publish_activity(settings, [activity_row(1, T - HOUR, 1), activity_row(1, T + HOUR, 99)])

    # When the training set is built for a label at T
    frame = joined(settings, label_frame([(1, T, 1)]))

    # Then the label sees the row from before T, not the one from its future
    assert len(frame) == 1
    assert frame.loc[(1, T), "sessions"] == 1
    assert frame.loc[(1, T), "churned"] == 1


def test_each_label_gets_the_latest_row_before_its_own_time(settings):
    # Given rows of one customer on three consecutive days
    publish_activity(
        settings,
        [
            activity_row(1, T - HOUR, 1),
            activity_row(1, T + HOUR, 2),
            activity_row(1, T + pd.Timedelta(days=1) + HOUR, 3),
        ],
    )

    # When labels at T and at T + 1 day are joined
    frame = joined(settings, label_frame([(1, T, 0), (1, T + pd.Timedelta(days=1), 1)]))

    # Then each label gets the latest row at or before its own time, and nothing later
    assert frame.loc[(1, T), "sessions"] == 1
    assert frame.loc[(1, T + pd.Timedelta(days=1)), "sessions"] == 2


def test_a_label_of_a_customer_without_any_feature_rows_gets_nulls(settings):
    # Given a store holding rows of customer 1 only
    publish_activity(settings, [activity_row(1, T - HOUR, 1)])

    # When the training set is built for labels of customers 1 and 2 at T
    frame = joined(settings, label_frame([(1, T, 0), (2, T, 1)]))

    # Then customer 2's label row is kept, with every feature missing
    assert len(frame) == 2
    assert frame.loc[(2, T), "churned"] == 1
    assert frame.loc[(2, T), FEATURES].isna().all()


# Feast's file (dask) offline store filters the joined rows by [T - ttl, T] and thereby drops
# an entity row whose every feature row lies outside that range, instead of returning nulls.
# `labelling.training_set` must put those labels back (see the fix in the test report).


def test_a_label_whose_only_feature_rows_are_after_its_time_gets_nulls(settings):
    # Given customer 2 whose only rows are after T (customer 1 keeps the store non-empty)
    publish_activity(
        settings,
        [
            activity_row(1, T - HOUR, 1),
            activity_row(2, T + HOUR, 99),
            activity_row(2, T + pd.Timedelta(days=1), 98),
        ],
    )

    # When the training set is built for labels at T
    frame = joined(settings, label_frame([(1, T, 0), (2, T, 1)]))

    # Then customer 2's label row is kept, with every feature missing: never the future row
    assert frame.loc[(2, T), "churned"] == 1
    assert frame.loc[(2, T), FEATURES].isna().all()
    assert len(frame) == 2


def test_a_feature_row_older_than_the_ttl_is_not_joined(settings):
    # Given customer 3 whose only row is 8 days before T (the view's TTL is 7 days)
    publish_activity(
        settings, [activity_row(1, T - HOUR, 1), activity_row(3, T - pd.Timedelta(days=8), 5)]
    )

    # When the training set is built for labels at T
    frame = joined(settings, label_frame([(1, T, 0), (3, T, 0)]))

    # Then the stale row is not used, and the label is kept with missing features
    assert frame.loc[(3, T), FEATURES].isna().all()
    assert len(frame) == 2


# The label window ----------------------------------------------------------------------------

START = date(2026, 1, 1)
DELAY = 30
LANDED = [START + timedelta(days=DELAY + n) for n in range(5)]  # 2026-01-31 .. 2026-02-04


def land_labels(settings) -> None:
    """Five landing days of labels; the labels landing on day L are of day L - 30."""
    for landing_day in LANDED:
        labels = synthetic.labels(settings.synthetic, landing_day)
        lake.write_table_atomic(
            pa.Table.from_pandas(labels, schema=LABEL_SCHEMA, preserve_index=False),
            lake.partition_file(settings.raw_root, settings.project.label.dataset, landing_day),
        )


def predicted_days(labels: pd.DataFrame) -> list[date]:
    """The prediction days of labels (a label's timestamp is the midnight after its day)."""
    return sorted({stamp.date() - timedelta(days=1) for stamp in labels["event_timestamp"]})


def labelled(day: date) -> date:
    return day - timedelta(days=DELAY)


def test_load_labels_reads_the_latest_window_of_landed_partitions(settings):
    # Given five days of landed labels
    land_labels(settings)

    # When labels are loaded for a three-day window as of the last landing day
    labels = labelling.load_labels(settings, LANDED[-1], window_days=3)

    # Then they are the labels of the latest three landing days, as an entity dataframe
    assert predicted_days(labels) == [labelled(day) for day in LANDED[-3:]]
    assert list(labels.columns) == ["customer_id", "event_timestamp", "churned"]
    assert len(labels) == 3 * settings.synthetic.customers
    assert str(labels["event_timestamp"].dtype).endswith("UTC]")


def test_load_labels_never_reads_a_partition_landed_after_as_of(settings):
    # Given five days of landed labels
    land_labels(settings)

    # When labels are loaded as of the third landing day
    labels = labelling.load_labels(settings, LANDED[2], window_days=3)

    # Then the partitions that landed later are not read
    assert predicted_days(labels) == [labelled(day) for day in LANDED[:3]]


def test_load_labels_defaults_to_the_settings_window(settings, monkeypatch):
    # Given five landed days and a configured window of three
    land_labels(settings)
    monkeypatch.setenv("MLOPS_TRAINING__WINDOW_DAYS", "3")

    # When labels are loaded without a window
    labels = labelling.load_labels(load_settings(), LANDED[-1])

    # Then the configured window applies
    assert predicted_days(labels) == [labelled(day) for day in LANDED[-3:]]


def test_load_labels_honours_the_prediction_day_range(settings):
    # Given five landed days
    land_labels(settings)

    # When labels are loaded for prediction days 2026-01-02 .. 2026-01-03 (inclusive)
    labels = labelling.load_labels(
        settings, LANDED[-1], prediction_start=date(2026, 1, 2), prediction_end=date(2026, 1, 3)
    )

    # Then exactly those prediction days are kept
    assert predicted_days(labels) == [date(2026, 1, 2), date(2026, 1, 3)]
    assert len(labels) == 2 * settings.synthetic.customers


def test_load_labels_with_only_a_prediction_start_reads_up_to_as_of(settings):
    land_labels(settings)

    labels = labelling.load_labels(settings, LANDED[3], prediction_start=date(2026, 1, 3))

    assert predicted_days(labels) == [date(2026, 1, 3), date(2026, 1, 4)]


def test_load_labels_with_only_a_prediction_end_narrows_the_window(settings):
    land_labels(settings)

    labels = labelling.load_labels(
        settings, LANDED[-1], window_days=4, prediction_end=date(2026, 1, 3)
    )

    assert predicted_days(labels) == [date(2026, 1, 2), date(2026, 1, 3)]


def test_no_landed_labels_is_a_configuration_error(settings):
    # Given a lake without labels
    # When / Then loading labels fails naming the day
    with pytest.raises(ConfigurationError, match="no labels have landed by 2026-02-04"):
        labelling.load_labels(settings, LANDED[-1])


def test_labels_that_land_only_after_as_of_are_a_configuration_error(settings):
    # Given labels that all landed after as_of
    land_labels(settings)

    # When / Then loading as of the day before the first landing fails
    with pytest.raises(ConfigurationError, match="no labels have landed by 2026-01-30"):
        labelling.load_labels(settings, LANDED[0] - timedelta(days=1))


# Validation of the training set --------------------------------------------------------------


def training_frame(settings) -> pd.DataFrame:
    """A well-formed point-in-time training set of one day of the synthetic world."""
    day = settings.synthetic.start_date
    frame = synthetic.activity(settings.synthetic, day)
    truth = synthetic.churn_probability(settings.synthetic, frame, day)
    frame["event_timestamp"] = pd.Timestamp(datetime(2026, 1, 2, tzinfo=UTC))
    frame["churned"] = (np.random.default_rng(0).random(len(frame)) < truth).astype(np.int64)
    return frame


@pytest.fixture
def small_minimum(settings, monkeypatch):
    """Settings that accept the 300-row training set of the `settings` world."""
    monkeypatch.setenv("MLOPS_TRAINING__MIN_ROWS", "100")
    return load_settings()


def test_a_good_training_set_passes(small_minimum):
    # Given a well-formed training set
    frame = training_frame(small_minimum)

    # When it is validated
    result = validation.validate_training_set(small_minimum, frame)

    # Then it passes
    assert result["success"] is True


def _all_zero(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(churned=0)


def _null_labels(frame: pd.DataFrame) -> pd.DataFrame:
    labels = frame["churned"].astype("float64")
    labels.iloc[::10] = np.nan
    return frame.assign(churned=labels)


def _unknown_label(frame: pd.DataFrame) -> pd.DataFrame:
    labels = frame["churned"].copy()
    labels.iloc[0] = 2
    return frame.assign(churned=labels)


def _duplicate_keys(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.head(5)], ignore_index=True)


def _missing_plan(frame: pd.DataFrame) -> pd.DataFrame:
    plans = frame["plan"].copy()
    plans.iloc[: len(frame) // 2] = None
    return frame.assign(plan=plans)


@pytest.mark.parametrize(
    ("spoil", "named"),
    [
        (_all_zero, "expect_column_mean_to_be_between on column 'churned': observed"),
        (_null_labels, "expect_column_values_to_not_be_null on column 'churned'"),
        (_unknown_label, "expect_column_values_to_be_in_set on column 'churned'"),
        (_duplicate_keys, "expect_compound_columns_to_be_unique"),
        (_missing_plan, "expect_column_values_to_not_be_null on column 'plan'"),
    ],
    ids=["label-share-zero", "null-labels", "label-not-0-or-1", "duplicate-keys", "no-features"],
)
def test_a_bad_training_set_fails_naming_the_expectation(small_minimum, spoil, named):
    # Given a training set spoiled in one way
    frame = spoil(training_frame(small_minimum))

    # When / Then validation fails and names the expectation that did not hold
    with pytest.raises(ValidationFailedError) as failure:
        validation.validate_training_set(small_minimum, frame)
    assert named in str(failure.value)
    assert "checkpoint 'training_set'" in str(failure.value)


def test_too_few_rows_fail_naming_the_row_count(settings, monkeypatch):
    # Given a minimum far above the training set's 300 rows
    monkeypatch.setenv("MLOPS_TRAINING__MIN_ROWS", "100000")
    strict = load_settings()

    # When / Then validation fails naming the row-count expectation and the count
    with pytest.raises(ValidationFailedError) as failure:
        validation.validate_training_set(strict, training_frame(strict))
    assert "expect_table_row_count_to_be_between: observed 300" in str(failure.value)
    assert "training set of 300 rows" in str(failure.value)


@pytest.mark.parametrize("labels_per_join", [1, 4, 7, 50_000])
def test_labels_joined_in_groups_of_days_equal_one_join_of_them_all(settings, labels_per_join):
    # Given rows of three customers over three days, some missing
    rows = [
        activity_row(customer, T + pd.Timedelta(days=day) - HOUR, 10 * day + customer)
        for day in range(3)
        for customer in (1, 2, 3)
        if (customer, day) != (2, 1)
    ]
    publish_activity(settings, rows)
    labels = label_frame(
        [(c, T + pd.Timedelta(days=d), (c + d) % 2) for d in range(3) for c in (1, 2, 3)]
    )
    store = feast_store.apply_repo(settings)
    service = store.get_feature_service(settings.project.model.feature_service)

    # When the training set is built (whole days of labels, up to so many a Feast call:
    # a day a call, two, all three) and by one Feast call
    training = settings.training.model_copy(update={"labels_per_join": labels_per_join})
    grouped = settings.model_copy(update={"training": training})
    frame = labelling.training_set(grouped, labels, store)
    whole = store.get_historical_features(entity_df=labels, features=service).to_df()

    # Then both hold the same rows and values
    keys = ["event_timestamp", "customer_id"]
    whole = whole.sort_values(keys, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(frame[whole.columns], whole)
