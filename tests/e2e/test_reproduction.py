"""Reproducing published predictions from their lineage, after the champion moved twice and
later nights landed; and clear reports when an input it needs is gone.

One world serves the module: the validated lake grows night by night, each night is scored
through the CLI's `score` (three shards of 100 customers) with the champion of the time:
v1 for the first three nights, then v2, then v3.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import cli, contracts
from pipelines.demo.worlds import labelled_frame, land_validated
from pipelines.io import feast_store, lake, tracking
from pipelines.registry import alias_moves, model_versions
from pipelines.scoring import publishing, reproduction
from pipelines.settings import Settings, load_settings
from pipelines.training import registration
from tests.cli_runs import restored_umask

pytestmark = pytest.mark.e2e

HISTORY = 7  # nights of features before the first scored night
NIGHTS = 9  # scored nights: v1 scores the first three, v2 the next three, v3 the rest
NIGHT = date(2026, 1, 1) + timedelta(days=HISTORY)  # the night reproduced


def _main(*argv: str) -> tuple[int, dict[str, Any] | None, str]:
    """`python -m pipelines` in this process: its exit code, printed JSON and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with restored_umask(), redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(argv))
    return code, (json.loads(out.getvalue()) if out.getvalue() else None), err.getvalue()


def _promote(settings: Settings, last_day: date, trees: int, expected: str | None) -> str:
    model = registration.train_and_register(
        settings, labelled_frame(settings, last_day), {"n_estimators": trees}
    )
    alias_moves.promote(settings, model.version, expected, f"{trees} trees", "test")
    return model.version


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[Settings]:
    """Nine scored nights, the champion promoted twice after the first three."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_STATE_ROOT", str(tmp_path_factory.mktemp("world") / "state"))
        patch.setenv("MLOPS_SYNTHETIC__CUSTOMERS", "300")
        patch.setenv("MLOPS_SCORING__SHARD_ROWS", "100")
        settings = load_settings()
        for offset in range(HISTORY):
            land_validated(settings, settings.synthetic.start_date + timedelta(days=offset), False)
        feast_store.apply_repo(settings)
        champion = _promote(settings, NIGHT - timedelta(days=1), 20, None)
        for offset in range(NIGHTS):
            night = NIGHT + timedelta(days=offset)
            if offset in (3, 6):  # two promotions after the reproduced night
                champion = _promote(settings, night - timedelta(days=1), 10 + offset, champion)
            land_validated(settings, night, False)  # the night lands, then it is scored
            code, scored, err = _main("score", str(night))
            assert code == 0, err
            assert scored is not None and scored["model_version"] == champion
        yield settings


@contextmanager
def _moved_aside(path: Path) -> Iterator[None]:
    """`path` gone for the duration (moved beside it), then put back."""
    aside = path.with_name(f"{path.name}.aside")
    path.rename(aside)
    try:
        yield
    finally:
        aside.rename(path)


def _version_of(settings: Settings, night: date) -> str:
    path = publishing.partition(settings, publishing.PREDICTIONS, night)
    return pq.read_table(path, columns=["model_version"]).column(0)[0].as_py()


def test_a_night_scored_before_two_promotions_is_reproduced_bit_for_bit(world):
    # Given the champion moved twice since the night and eight later nights landed
    assert model_versions.alias_version(world, contracts.CHAMPION) == "3"
    assert _version_of(world, NIGHT) == "1"
    assert _version_of(world, NIGHT + timedelta(days=NIGHTS - 1)) == "3"

    # When the night is reproduced through the command line
    code, report, _ = _main("reproduce", "--date", str(NIGHT))

    # Then every row is recomputed bit for bit with the version its lineage names
    assert code == 0 and report is not None
    assert report["equal"] is True and report["why"] == [] and report["differences"] == []
    assert report["rows_compared"] == world.synthetic.customers
    assert report["rows_differing"] == 0
    run_id = tracking.mlflow_client(world).get_model_version(world.project.model.name, "1").run_id
    assert report["model"] == {"name": world.project.model.name, "version": "1", "run_id": run_id}
    ids = report["scoring_run_id"]
    assert ids["published"] == ids["recomputed"]
    assert report["features"]["as_of"] == contracts.midnight_after(NIGHT).isoformat()
    assert report["partition"] == str(publishing.partition(world, publishing.PREDICTIONS, NIGHT))


def test_some_entities_are_reproduced_alone(world):
    entity = world.project.entity.column
    published = pq.read_table(publishing.partition(world, publishing.PREDICTIONS, NIGHT))
    first, last = published.column(entity)[0].as_py(), published.column(entity)[-1].as_py()

    code, report, _ = _main(
        "reproduce", "--date", str(NIGHT), "--entity", str(last), "--entity", str(first)
    )

    assert code == 0 and report is not None and report["equal"] is True
    assert report["rows_compared"] == 2 and report["entities"] == [last, first]


def test_an_entity_not_in_the_partition_is_reported(world):
    code, report, err = _main("reproduce", "--date", str(NIGHT), "--entity", "999999999")

    assert code == 1 and report is not None and report["equal"] is False
    (difference,) = report["differences"]
    assert difference[world.project.entity.column] == 999999999
    assert difference["why"].startswith("not in the partition")
    assert "error: night" in err and "1 of 1 rows differ" in err


def test_an_id_of_the_wrong_type_is_refused_in_one_line(world):
    code, report, err = _main("reproduce", "--date", str(NIGHT), "--entity", "C-17")

    assert code == 1 and report is None
    assert err.strip() == "error: entity id 'C-17' is not an int64 (the project's ids are)"


def test_a_deleted_feature_partition_is_named_with_why(world):
    # Given the feature partition of the night itself is gone (the window still holds older)
    used = lake.partition_file(world.validated_root, world.project.feature_dataset, NIGHT)
    with _moved_aside(used):
        code, report, err = _main("reproduce", "--date", str(NIGHT))

    # Then the report says every row's feature row is gone, naming the file that held it
    assert code == 1 and report is not None and report["equal"] is False
    assert report["rows_differing"] == world.synthetic.customers
    assert len(report["differences"]) == reproduction.MAX_DIFFERENCES
    first = report["differences"][0]
    assert "feature_timestamp" in first["columns"]
    assert first["published"]["feature_timestamp"] > first["recomputed"]["feature_timestamp"]
    assert f"{used} is missing" in first["why"]
    assert "is not reproduced bit for bit" in err


def test_deleted_model_files_are_named(world):
    client = tracking.mlflow_client(world)
    uri = client.get_model_version_download_uri(world.project.model.name, "1")
    files = Path(uri.removeprefix("file://"))
    with _moved_aside(files):
        code, report, err = _main("reproduce", "--date", str(NIGHT))

    assert code == 1 and report is not None and report["equal"] is False
    (why,) = report["why"]
    assert why.startswith(f"the files of model version 1 of '{world.project.model.name}'")
    assert uri in why and "deleted" in why
    assert report["rows_compared"] == 0 and report["model"]["version"] == "1"
    assert f"error: night {NIGHT} is not reproduced: the files" in err


def test_a_version_deleted_from_the_registry_is_named(world):
    # Given version 2, which scored the fourth night, is deleted from the registry
    night = NIGHT + timedelta(days=3)
    assert _version_of(world, night) == "2"
    tracking.mlflow_client(world).delete_model_version(world.project.model.name, "2")

    code, report, _ = _main("reproduce", "--date", str(night))

    assert code == 1 and report is not None
    (why,) = report["why"]
    assert "model version 2" in why and "no longer in the registry" in why


def test_a_score_one_bit_off_is_a_difference(world):
    # Given a published score nudged by one unit in the last place
    night = NIGHT + timedelta(days=1)
    path = publishing.partition(world, publishing.PREDICTIONS, night)
    score = world.project.scoring.score_column
    original = path.read_bytes()
    table = pq.read_table(path)
    scores = table.column(score).to_numpy().copy()
    scores[7] = np.nextafter(scores[7], 1.0)
    nudged = table.set_column(table.schema.get_field_index(score), score, pa.array(scores))
    try:
        pq.write_table(nudged, path)
        code, report, _ = _main("reproduce", "--date", str(night))
    finally:
        path.write_bytes(original)

    assert code == 1 and report is not None and report["rows_differing"] == 1
    (difference,) = report["differences"]
    assert difference["columns"] == [score]
    assert difference["published"][score] == float(scores[7])
    assert difference["recomputed"][score] == float(np.nextafter(scores[7], 0.0))
    assert difference["why"].startswith("the same feature row")


def test_a_missing_partition_is_a_clear_report(world):
    night = NIGHT - timedelta(days=1)  # history: never scored

    code, report, err = _main("reproduce", "--date", str(night))

    assert code == 1 and report is not None and report["equal"] is False
    (why,) = report["why"]
    assert "is missing" in why and f"date={night}" in why
    assert report["model"] is None and report["rows_compared"] == 0
    assert "Traceback" not in err
