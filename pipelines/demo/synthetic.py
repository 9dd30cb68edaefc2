"""Deterministic demo world: a subscription service whose customers may churn.

Each day lands one raw activity partition (one row per customer) and, once the
label delay has passed, the churn labels of the day that many days before. The
labels come from a hidden ground-truth function of that day's activity plus
noise. Every value depends only on (seed, customer, day offset from the start), so
any day can be generated alone, in any order, and always yields the same bytes; a
world started on another date is the same world moved in time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import contracts
from pipelines.io import lake
from pipelines.settings import Settings, SyntheticSettings

PLAN_PRICES = {"basic": 19.0, "standard": 39.0, "premium": 69.0}


REGIONS = ("na", "eu", "apac", "latam")


NUMERIC_FEATURES = (
    "tenure_days",
    "monthly_charge",
    "sessions",
    "usage_minutes",
    "payment_failures",
    "support_tickets",
    "days_since_last_login",
)


CATEGORICAL_FEATURES = ("plan", "region")


FEATURES = CATEGORICAL_FEATURES + NUMERIC_FEATURES


ACTIVITY_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("plan", pa.string()),
        ("region", pa.string()),
        ("tenure_days", pa.int64()),
        ("monthly_charge", pa.float64()),
        ("sessions", pa.int64()),
        ("usage_minutes", pa.float64()),
        ("payment_failures", pa.int64()),
        ("support_tickets", pa.int64()),
        ("days_since_last_login", pa.int64()),
    ]
)


LABEL_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("churned", pa.int64()),
        ("label_available_at", pa.timestamp("us", tz="UTC")),
    ]
)


_DAY_SECONDS = 86_400


# Digits of a customer id written as text (a project whose entity is a string): zero-padded,
# so the ids sort as text as they do as numbers.
STRING_ID_DIGITS = 10


# The start whose day streams are the calendar's own ordinals (the default world's).
_REFERENCE_START = date(2026, 1, 1)


class Fault(StrEnum):
    """Defects the generator can inject into a landed activity partition."""

    MISSING_COLUMN = "missing_column"
    WRONG_DTYPE = "wrong_dtype"
    NULLS = "nulls"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_CATEGORY = "unknown_category"
    DUPLICATE_KEYS = "duplicate_keys"
    TIMESTAMPS_OUTSIDE_DAY = "timestamps_outside_day"
    EMPTY = "empty"
    CORRUPT_FILE = "corrupt_file"
    NOT_LANDED = "not_landed"
    EXTRA_COLUMN = "extra_column"


@dataclass(frozen=True)
class Customers:
    """Static attributes of every customer, plus the hidden traits that drive behaviour."""

    customer_id: np.ndarray
    plan: np.ndarray
    region: np.ndarray
    base_tenure_days: np.ndarray
    monthly_charge: np.ndarray
    engagement: np.ndarray
    payment_risk: np.ndarray
    frustration: np.ndarray


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _day_stream(cfg: SyntheticSettings, day: date) -> int:
    """A day's random stream, by its offset from the world's start."""
    return _REFERENCE_START.toordinal() + (day - cfg.start_date).days


def customers(cfg: SyntheticSettings) -> Customers:
    """The customer base: the same for every day of one seed."""
    rng = _rng(cfg.seed, 0)
    n = cfg.customers
    plans = np.array(list(PLAN_PRICES))
    plan = rng.choice(plans, size=n, p=[0.5, 0.35, 0.15])
    prices = np.array([PLAN_PRICES[p] for p in plan])
    return Customers(
        customer_id=np.arange(1, n + 1, dtype=np.int64) + 100_000,
        plan=plan,
        region=rng.choice(np.array(REGIONS), size=n, p=[0.4, 0.3, 0.2, 0.1]),
        base_tenure_days=rng.integers(0, 2_000, size=n),
        monthly_charge=np.round(prices * rng.uniform(0.8, 1.0, size=n), 2),
        engagement=rng.normal(0.0, 1.0, size=n),
        payment_risk=rng.beta(1.0, 12.0, size=n),
        frustration=rng.beta(1.2, 10.0, size=n),
    )


def _drift_factor(cfg: SyntheticSettings, day: date, feature: str) -> float:
    """Multiplier on a feature's rate once covariate drift has started."""
    if cfg.drift_start is None or day < cfg.drift_start or feature not in cfg.drift_features:
        return 1.0
    return 1.0 + cfg.drift_magnitude


def activity(cfg: SyntheticSettings, day: date) -> pd.DataFrame:
    """One day's activity snapshot: one row per customer, timestamps inside the day."""
    unknown = set(cfg.drift_features) - set(NUMERIC_FEATURES)
    if unknown:
        raise ValueError(f"drift_features names unknown numeric features: {sorted(unknown)}")
    base = customers(cfg)
    n = len(base.customer_id)
    rng = _rng(cfg.seed, 1, _day_stream(cfg, day))
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    offsets = rng.integers(0, _DAY_SECONDS * 1_000_000, size=n)

    session_rate = np.exp(0.9 + 0.6 * base.engagement) * _drift_factor(cfg, day, "sessions")
    sessions = rng.poisson(session_rate)
    minutes_per_session = rng.gamma(2.0, 9.0 * np.exp(0.25 * base.engagement))
    # A day has 1440 minutes: heavy users saturate, they do not exceed it.
    usage = np.minimum(
        sessions * minutes_per_session * _drift_factor(cfg, day, "usage_minutes"), 1440.0
    )
    failures = rng.poisson(
        (0.02 + 0.6 * base.payment_risk) * _drift_factor(cfg, day, "payment_failures")
    )
    tickets = rng.poisson(
        (0.03 + 0.5 * base.frustration) * _drift_factor(cfg, day, "support_tickets")
    )
    idle_p = 1.0 / (1.0 + np.exp(-(base.engagement + 0.5)))
    idle_days = np.minimum(rng.geometric(np.clip(idle_p, 0.02, 1.0)), 90)
    days_since_login = np.where(sessions > 0, 0, idle_days) * _drift_factor(
        cfg, day, "days_since_last_login"
    )
    tenure = base.base_tenure_days + (day - cfg.start_date).days
    charge = base.monthly_charge * _drift_factor(cfg, day, "monthly_charge")

    return pd.DataFrame(
        {
            "customer_id": base.customer_id,
            "event_timestamp": pd.to_datetime(midnight) + pd.to_timedelta(offsets, unit="us"),
            "plan": base.plan,
            "region": base.region,
            "tenure_days": np.maximum(tenure * _drift_factor(cfg, day, "tenure_days"), 0).astype(
                np.int64
            ),
            "monthly_charge": np.round(charge, 2),
            "sessions": sessions.astype(np.int64),
            "usage_minutes": np.round(usage, 2),
            "payment_failures": failures.astype(np.int64),
            "support_tickets": tickets.astype(np.int64),
            "days_since_last_login": np.round(days_since_login).astype(np.int64),
        }
    )


def churn_probability(cfg: SyntheticSettings, frame: pd.DataFrame, day: date) -> np.ndarray:
    """The hidden ground truth: probability that a customer churns within the label window."""
    logit = (
        -0.6
        + 1.4 * frame["payment_failures"].to_numpy()
        + 1.1 * frame["support_tickets"].to_numpy()
        + 0.08 * frame["days_since_last_login"].to_numpy()
        - 0.45 * np.log1p(frame["usage_minutes"].to_numpy())
        - 0.6 * np.log1p(frame["tenure_days"].to_numpy() / 365.0)
        + 0.02 * (frame["monthly_charge"].to_numpy() - 30.0)
        + np.where(frame["plan"].to_numpy() == "basic", 0.4, 0.0)
        + np.where(frame["region"].to_numpy() == "latam", 0.35, 0.0)
    )
    if cfg.concept_drift_start is not None and day >= cfg.concept_drift_start:
        # After the concept shift, price sensitivity dominates and engagement protects less.
        logit = logit + cfg.concept_drift_strength * (
            0.05 * (frame["monthly_charge"].to_numpy() - 30.0)
            + 0.2 * np.log1p(frame["usage_minutes"].to_numpy())
        )
    return 1.0 / (1.0 + np.exp(-logit))


def labels(cfg: SyntheticSettings, landing_day: date) -> pd.DataFrame:
    """Labels that land on `landing_day`: churn outcomes of the day `label_delay_days` before.

    A label's `event_timestamp` is the prediction time (midnight after the
    labelled day), so a point-in-time join sees that day's features and none later.
    """
    labelled_day = landing_day - timedelta(days=cfg.label_delay_days)
    if labelled_day < cfg.start_date:
        return pd.DataFrame(
            {field.name: pd.Series(dtype=field.type.to_pandas_dtype()) for field in LABEL_SCHEMA}
        )
    frame = activity(cfg, labelled_day)
    probability = churn_probability(cfg, frame, labelled_day)
    rng = _rng(cfg.seed, 2, _day_stream(cfg, labelled_day))
    prediction_time = contracts.label_time(labelled_day)
    available = datetime.combine(landing_day, datetime.min.time(), UTC)
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "event_timestamp": pd.Timestamp(prediction_time),
            "churned": (rng.random(len(frame)) < probability).astype(np.int64),
            "label_available_at": pd.Timestamp(available),
        }
    )


def inject_fault(
    frame: pd.DataFrame, fault: Fault, day: date, cfg: SyntheticSettings
) -> pd.DataFrame:
    """A copy of `frame` with one defect; file-level faults are applied when landing."""
    rng = _rng(cfg.seed, 3, _day_stream(cfg, day))
    broken = frame.copy()
    some = rng.random(len(broken)) < 0.2
    some[0] = True
    match fault:
        case Fault.MISSING_COLUMN:
            broken = broken.drop(columns=["usage_minutes"])
        case Fault.WRONG_DTYPE:
            broken["sessions"] = broken["sessions"].astype(str)
        case Fault.NULLS:
            broken["usage_minutes"] = broken["usage_minutes"].mask(some)
        case Fault.OUT_OF_RANGE:
            broken.loc[some, "usage_minutes"] = -broken.loc[some, "usage_minutes"] - 1.0
        case Fault.UNKNOWN_CATEGORY:
            broken.loc[some, "plan"] = "platinum"
        case Fault.DUPLICATE_KEYS:
            broken = pd.concat([broken, broken[some]], ignore_index=True)
        case Fault.TIMESTAMPS_OUTSIDE_DAY:
            broken.loc[some, "event_timestamp"] += pd.Timedelta(days=1)
        case Fault.EMPTY:
            broken = broken.iloc[0:0]
        case Fault.EXTRA_COLUMN:
            marked, unmarked = np.array("WINTER", dtype=object), np.array(None, dtype=object)
            broken["promo_code"] = np.where(some, marked, unmarked)
        case Fault.CORRUPT_FILE | Fault.NOT_LANDED:
            pass
    return broken


def keyed(settings: Settings, table: pa.Table) -> pa.Table:
    """`table` with its entity ids of the project's type: the generated integers, or the same
    numbers as zero-padded text when the project's entity is a string."""
    entity = settings.project.entity
    if entity.type == "int64" or entity.column not in table.column_names:
        return table
    index = table.schema.get_field_index(entity.column)
    text = pc.utf8_lpad(pc.cast(table.column(index), pa.string()), STRING_ID_DIGITS, "0")
    return table.set_column(index, pa.field(entity.column, pa.string()), text)


def land_day(settings: Settings, day: date, fault: Fault | None = None) -> Path | None:
    """Write one day's raw activity (and its labels, if due) into the raw zone.

    Returns the activity file, or None when the fault is that it never landed.
    """
    cfg = settings.synthetic
    names = settings.project
    due = labels(cfg, day)
    if len(due):
        lake.write_table_atomic(
            keyed(settings, pa.Table.from_pandas(due, schema=LABEL_SCHEMA, preserve_index=False)),
            lake.partition_file(settings.raw_root, names.label.dataset, day),
        )
    if fault is Fault.NOT_LANDED:
        return None
    frame = activity(cfg, day)
    target = lake.partition_file(settings.raw_root, names.source.dataset, day)
    if fault is None or fault in (Fault.CORRUPT_FILE, Fault.NOT_LANDED):
        table = pa.Table.from_pandas(frame, schema=ACTIVITY_SCHEMA, preserve_index=False)
    else:
        table = pa.Table.from_pandas(inject_fault(frame, fault, day, cfg), preserve_index=False)
        if "event_timestamp" in table.column_names:
            # Keep the landed unit (us) so only the injected fault differs from a clean day.
            index = table.schema.get_field_index("event_timestamp")
            unit = ACTIVITY_SCHEMA.field("event_timestamp").type
            table = table.set_column(index, "event_timestamp", table.column(index).cast(unit))
    lake.write_table_atomic(keyed(settings, table), target)
    if fault is Fault.CORRUPT_FILE:
        payload = target.read_bytes()
        lake.write_bytes_atomic(payload[: len(payload) // 2], target)
    return target


def days(cfg: SyntheticSettings) -> list[date]:
    """The simulated calendar: `days` consecutive days from `start_date`."""
    return [cfg.start_date + timedelta(days=offset) for offset in range(cfg.days)]
