"""Feast in the production profile: the registry on Postgres, the online store on Redis."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from pipelines import contracts
from pipelines.demo.worlds import land_validated
from pipelines.features import materialization
from pipelines.io import feast_store
from pipelines.settings import Settings, load_settings
from tests.integration.conftest import (
    database_url,
    redis_keys_matching,
    temporary_database,
    unique_name,
)

pytestmark = pytest.mark.integration

DAYS = [date(2026, 1, 1) + timedelta(days=n) for n in range(3)]
CUSTOMERS = 300


def settings_of(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> Settings:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def on_redis(
    postgres: str, redis_server: str, database: str, project: str, state_root: Path
) -> dict[str, str]:
    """The production profile's Feast: registry in `database`, values in Redis."""
    return {
        "MLOPS_STATE_ROOT": str(state_root),
        "MLOPS_PROFILE": "production",
        "MLOPS_FEAST__PROJECT": project,
        "MLOPS_FEAST__REDIS_CONNECTION": redis_server.removeprefix("redis://").split("/")[0],
        "MLOPS_FEAST__REGISTRY_SQL_URL": database_url(postgres, database, "psycopg"),
    }


def materialize_every_day(settings: Settings) -> dict[str, list]:
    """Apply the repo, materialize each day's window, read every customer back online."""
    store = feast_store.apply_repo(settings)
    for day in DAYS:
        window = materialization.materialization_window(settings, *contracts.night_interval(day))
        materialization.materialize_window(settings, *window, store=store)
    service = store.get_feature_service(settings.project.model.feature_service)
    rows = [{settings.project.entity.column: i} for i in range(CUSTOMERS)]
    return store.get_online_features(features=service, entity_rows=rows).to_dict()


def test_feast_on_redis_with_a_postgres_registry_serves_the_embedded_values(
    postgres, redis_server, tmp_path, monkeypatch
):
    common = {"MLOPS_SYNTHETIC__CUSTOMERS": str(CUSTOMERS)}
    embedded = settings_of(monkeypatch, common | {"MLOPS_STATE_ROOT": str(tmp_path / "embedded")})
    for day in DAYS:
        land_validated(embedded, day, labels=False)
    expected = materialize_every_day(embedded)

    project = unique_name("feast")  # Feast ends every Redis key with its project
    with temporary_database(postgres, "feast") as database:
        redis = on_redis(postgres, redis_server, database, project, tmp_path / "production")
        production = settings_of(monkeypatch, common | redis)
        for day in DAYS:
            land_validated(production, day, labels=False)
        store = None
        try:
            # Given the repo applied to the SQL registry and three nights materialized to Redis
            served = materialize_every_day(production)
            store = feast_store.feature_store(production)

            # Then the registry lives in Postgres and the values in Redis
            config = store.config
            assert config.registry.registry_type == "sql"
            assert config.online_store.type == "redis"
            assert [v.name for v in store.list_feature_views()] == [
                production.project.source.feature_view
            ]
            assert len(redis_keys_matching(redis_server, f"*{project}".encode())) == CUSTOMERS

            # And every customer's online features equal the embedded profile's
            assert served == expected
        finally:
            if store is not None:
                store.teardown()
    # And nothing of this test is left in Redis
    assert redis_keys_matching(redis_server, f"*{project}".encode()) == []


def test_the_online_service_on_redis_answers_as_on_sqlite(
    postgres, redis_server, tmp_path, monkeypatch
):
    from fastapi.testclient import TestClient

    from pipelines.demo import worlds
    from pipelines.registry import alias_moves
    from pipelines.serving import features
    from pipelines.serving.app import create_app
    from pipelines.training import registration

    night = DAYS[-1]
    common = {
        "MLOPS_SYNTHETIC__CUSTOMERS": str(CUSTOMERS),
        "MLOPS_SERVING__AS_OF": contracts.midnight_after(night).isoformat(),
        "MLOPS_SERVING__TOKEN": "itest-token",
    }
    embedded = settings_of(monkeypatch, common | {"MLOPS_STATE_ROOT": str(tmp_path / "embedded")})
    for day in DAYS:
        land_validated(embedded, day, labels=False)
    materialize_every_day(embedded)
    frame = worlds.labelled_frame(embedded, night)
    model = registration.train_and_register(embedded, frame, None, {"reason": "itest"})
    alias_moves.promote(embedded, model.version, None, "itest champion", "itest")
    ids = [int(key) for key in frame[embedded.project.entity.column].unique()[:200]]

    def answers(settings: Settings) -> dict:
        with TestClient(create_app(settings)) as client:
            response = client.post(
                "/v1/score", json={"ids": ids}, headers={"Authorization": "Bearer itest-token"}
            )
        assert response.status_code == 200, response.text
        return response.json()

    expected = answers(embedded)
    project = unique_name("serve")
    with temporary_database(postgres, "feast") as database:
        # Given the same nights on Redis and a Postgres registry, and the same champion
        # (the embedded state root: the same MLflow and lake)
        redis = on_redis(postgres, redis_server, database, project, tmp_path / "embedded")
        production = settings_of(monkeypatch, common | redis)
        try:
            materialize_every_day(production)
            # When the service answers from Redis
            served = answers(production)
            # (its direct reads being Feast's `get_online_features`, value for value)
            online = features.open_online_features(production)
            assert online.views is not None
            asked = [*ids, 1]
            assert features.read(online, asked) == features.read(replace(online, views=None), asked)
        finally:
            feast_store.feature_store(production).teardown()

    # Then every answer is the SQLite one, scores bit for bit; feature times agree to the
    # second (SQLite keeps whole seconds, Redis the microseconds)
    rows, want = served.pop("predictions"), expected.pop("predictions")
    assert served == expected
    assert {row["status"] for row in rows} == {"scored"}
    for row, wanted in zip(rows, want, strict=True):
        stamp, wanted_stamp = row.pop("feature_timestamp"), wanted.pop("feature_timestamp")
        assert row == wanted
        assert stamp[:19] == wanted_stamp[:19]
