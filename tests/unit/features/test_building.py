"""The nightly feature build from events equals a brute-force recomputation from all events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from pipelines.features import building, labelling
from pipelines.ingest import contract
from pipelines.io import lake
from pipelines.settings import Settings

START = date(2026, 3, 1)
NIGHTS = 12

PROJECT = {
    "name": "shop",
    "entity": {"name": "buyer", "column": "buyer_id", "type": "string"},
    "source": {
        "dataset": "purchases",
        "shape": "events",
        "feature_view": "buyer_purchases",
        "columns": {
            "quantity": {"type": "int64", "min": 0, "max_null_share": 0.2},
            "amount": {"type": "float64", "min": 0},
            "store": {"type": "string", "max_null_share": 0.2},
        },
    },
    "aggregations": {
        "windows": {"d3": 3, "d7": 7},
        "active_days": 5,
        "features": {
            "purchases_3d": {"function": "count", "window": "d3"},
            "purchases_7d": {"function": "count", "window": "d7"},
            "quantity_7d": {"function": "sum", "column": "quantity", "window": "d7"},
            "spend_3d": {"function": "sum", "column": "amount", "window": "d3"},
            "mean_spend_7d": {"function": "mean", "column": "amount", "window": "d7"},
            "mean_quantity_7d": {"function": "mean", "column": "quantity", "window": "d7"},
            "min_spend_7d": {"function": "min", "column": "amount", "window": "d7"},
            "max_quantity_3d": {"function": "max", "column": "quantity", "window": "d3"},
            "stores_7d": {"function": "distinct_count", "column": "store", "window": "d7"},
            "last_store": {"function": "last", "column": "store"},
            "last_quantity": {"function": "last", "column": "quantity"},
            "days_since_first": {"function": "days_since_first"},
            "days_since_last": {"function": "days_since_last"},
        },
    },
    "label": {"column": "bought_again", "derived": {"event_within_days": 3}},
    "model": {
        "name": "repeat",
        "feature_service": "repeat_v1",
        "hyperparameters": {"n_estimators": 20},
        "gate": [{"metric": "roc_auc", "greater_is_better": True, "threshold": 0.5}],
    },
    "scoring": {"score_column": "repeat_probability", "predicted_label_column": "repeat"},
}


def shop_settings(tmp_path: Path) -> Settings:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "project.yaml").write_text(yaml.safe_dump(PROJECT, sort_keys=False))
    return Settings(state_root=tmp_path / "state", project=folder)


def day_events(day: date, rng: np.random.Generator) -> pa.Table:
    """A day of purchases: 40 buyers of 60, several events each, some nulls, shuffled."""
    buyers = rng.choice(60, size=rng.integers(20, 40), replace=False)
    ids = np.repeat(buyers, rng.integers(1, 4, size=len(buyers)))
    rng.shuffle(ids)
    n = len(ids)
    seconds = rng.integers(0, 86_400, size=n)
    quantity = pd.array(rng.integers(0, 5, size=n), dtype="Int64")
    quantity[rng.random(n) < 0.1] = pd.NA
    stores = np.array(["north", "south", "east", "west"], dtype=object)[rng.integers(0, 4, n)]
    stores[rng.random(n) < 0.1] = None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return pa.table(
        {
            "buyer_id": [f"b{i:03d}" for i in ids],
            "event_timestamp": pa.array(
                [start + timedelta(seconds=int(s)) for s in seconds], pa.timestamp("us", tz="UTC")
            ),
            "quantity": pa.array(quantity, pa.int64()),
            "amount": rng.gamma(2.0, 10.0, size=n).round(2),
            "store": pa.array(stores, pa.string()),
        }
    )


def land_events(settings: Settings, nights: int = NIGHTS) -> pd.DataFrame:
    """Publish `nights` days of events into the validated zone, as the gate would."""
    rng = np.random.default_rng(3)
    frames = []
    for offset in range(nights):
        day = START + timedelta(days=offset)
        table = day_events(day, rng)
        lake.write_table_atomic(
            table, lake.partition_file(settings.validated_root, "purchases", day)
        )
        frames.append(table.to_pandas().assign(day=day, order=range(table.num_rows)))
    return pd.concat(frames, ignore_index=True)


def brute_force(events: pd.DataFrame, night: date) -> pd.DataFrame:
    """Night's features recomputed from every event up to it, one entity at a time."""
    rows = []
    seen = events[events["day"] <= night].sort_values(["event_timestamp", "day", "order"])
    for buyer, history in seen.groupby("buyer_id"):
        last_day = history["day"].max()
        if (night - last_day).days >= 5:
            continue
        d3 = history[history["day"] > night - timedelta(days=3)]
        d7 = history[history["day"] > night - timedelta(days=7)]
        quantity, stores = history["quantity"].dropna(), history["store"].dropna()
        rows.append(
            {
                "buyer_id": buyer,
                "purchases_3d": len(d3),
                "purchases_7d": len(d7),
                "quantity_7d": int(d7["quantity"].sum()),
                "spend_3d": float(d3["amount"].sum()),
                "mean_spend_7d": d7["amount"].mean() if len(d7) else None,
                "mean_quantity_7d": d7["quantity"].dropna().mean()
                if d7["quantity"].notna().any()
                else None,
                "min_spend_7d": d7["amount"].min() if len(d7) else None,
                "max_quantity_3d": d3["quantity"].max() if d3["quantity"].notna().any() else None,
                "stores_7d": d7["store"].nunique(),
                "last_store": stores.iloc[-1] if len(stores) else None,
                "last_quantity": quantity.iloc[-1] if len(quantity) else None,
                "days_since_first": (night - history["day"].min()).days,
                "days_since_last": (night - last_day).days,
            }
        )
    return pd.DataFrame(rows)


def _compare(built: pd.DataFrame, expected: pd.DataFrame) -> None:
    built = built.drop(columns="event_timestamp").reset_index(drop=True)
    expected = expected.reset_index(drop=True)[built.columns]
    for column in built.columns:
        left, right = built[column], expected[column]
        if pd.api.types.is_float_dtype(left) or column.startswith(("mean", "min", "spend")):
            np.testing.assert_allclose(
                left.astype(float), right.astype(float), rtol=1e-12, err_msg=column
            )
        else:
            assert (
                left.astype(object).where(left.notna(), None).tolist()
                == right.astype(object).where(right.notna(), None).tolist()
            ), column


def test_every_night_equals_a_brute_force_recomputation_from_all_events(tmp_path):
    # Given twelve nights of events with nulls, several events per buyer and string ids
    settings = shop_settings(tmp_path)
    events = land_events(settings)

    for offset in range(NIGHTS):
        night = START + timedelta(days=offset)
        # When each night is built in turn from the previous night's state
        built = building.build_night(settings, night)

        # Then it replays nothing and equals a recomputation from every event so far
        assert built.nights_replayed == 1
        table = pd.read_parquet(built.path)
        assert (
            table["event_timestamp"]
            .eq(pd.Timestamp(night + timedelta(days=1), tz="UTC") - pd.Timedelta(1, "us"))
            .all()
        )
        _compare(table, brute_force(events, night).sort_values("buyer_id"))


def test_the_feature_partition_has_the_contract_schema_and_sorted_entities(tmp_path):
    settings = shop_settings(tmp_path)
    land_events(settings, nights=2)

    built = building.build_night(settings, START + timedelta(days=1))

    table = pa.parquet.read_table(built.path)
    assert table.schema == contract.feature_schema(settings.project)
    ids = table.column("buyer_id").to_pylist()
    assert ids == sorted(ids)


def test_a_night_without_stored_state_replays_from_the_last_one_and_stale_states_go(tmp_path):
    # Given eight nights of events of which only the first three were built
    settings = shop_settings(tmp_path)
    events = land_events(settings, nights=8)
    for offset in range(3):
        building.build_night(settings, START + timedelta(days=offset))

    # When night 8 is built, then it replays the four nights in between and itself
    night = START + timedelta(days=7)
    built = building.build_night(settings, night)
    assert built.nights_replayed == 5
    _compare(pd.read_parquet(built.path), brute_force(events, night).sort_values("buyer_id"))

    # And when night 4 is rebuilt (it landed again), the states after it are dropped
    building.build_night(settings, START + timedelta(days=3))
    assert max(building.state_days(settings)) == START + timedelta(days=3)


def test_a_snapshot_project_has_nothing_to_build(settings):
    with pytest.raises(ValueError, match="snapshot source: nothing to build"):
        building.build_night(settings, START)


def test_derived_labels_say_who_bought_again_within_the_horizon(tmp_path):
    # Given eight nights of events, each night's features built
    settings = shop_settings(tmp_path)
    events = land_events(settings, nights=8)
    for offset in range(8):
        building.build_night(settings, START + timedelta(days=offset))

    # When night 8 derives labels with its 3-day horizon
    night = START + timedelta(days=7)
    derived = labelling.derive_labels(settings, night)

    # Then they are about night 5's featured buyers, stamped the midnight after night 5,
    # 1 exactly for those with an event in nights 6 to 8
    predicted = START + timedelta(days=4)
    assert derived.prediction_day == predicted.isoformat()
    labels = pd.read_parquet(derived.path)
    featured = pd.read_parquet(
        lake.partition_file(settings.validated_root, "purchases_features", predicted)
    )
    assert sorted(labels["buyer_id"]) == sorted(featured["buyer_id"])
    assert (labels["event_timestamp"] == pd.Timestamp(night - timedelta(days=2), tz="UTC")).all()
    later = set(events.loc[(events["day"] > predicted) & (events["day"] <= night), "buyer_id"])
    expected = labels["buyer_id"].isin(later).astype("int64")
    assert labels["bought_again"].tolist() == expected.tolist()
    assert derived.positives == int(expected.sum()) > 0
    # And the labels are read back as landed ones are: about night 5
    loaded = labelling.load_labels(settings, night, window_days=1)
    assert len(loaded) == len(labels)


def test_labels_before_the_horizon_has_passed_are_skipped(tmp_path):
    settings = shop_settings(tmp_path)
    land_events(settings, nights=2)
    building.build_night(settings, START)

    assert labelling.derive_labels(settings, START + timedelta(days=1)).skipped
