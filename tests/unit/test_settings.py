"""Settings: defaults, the MLOPS_ environment, immutability and the typo guard."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.settings import PROJECT_ROOT, Settings, SyntheticSettings, load_settings


@pytest.fixture
def clean_env(monkeypatch):
    """No MLOPS_ variable of the calling shell leaks into the test."""
    for name in list(os.environ):
        if name.startswith("MLOPS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_are_the_embedded_profile(clean_env):
    settings = load_settings()

    assert settings.profile == "embedded"
    assert settings.project_root == PROJECT_ROOT
    assert settings.state_root == PROJECT_ROOT / ".state"
    assert settings.synthetic == SyntheticSettings()
    assert settings.synthetic.customers == 5_000
    assert settings.feast.materialize_overlap == timedelta(hours=1)
    assert settings.project.entity.column == "customer_id"


def test_every_written_path_lives_under_the_state_root(settings):
    root = settings.state_root
    written = {
        "lake_root": settings.lake_root,
        "raw_root": settings.raw_root,
        "validated_root": settings.validated_root,
        "quarantine_root": settings.quarantine_root,
        "feast_root": settings.feast_root,
        "gx_state_root": settings.gx_state_root,
        "data_docs_index": settings.data_docs_index,
        "airflow_home": settings.airflow_home,
        "alerts_file": settings.alerts_file,
    }
    outside = {name: path for name, path in written.items() if not path.is_relative_to(root)}
    assert outside == {}
    assert len(set(written.values())) == len(written)

    env = settings.airflow_env()
    assert Path(env["AIRFLOW_HOME"]).is_relative_to(root)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"sqlite:///{settings.airflow_home / 'airflow.db'}?timeout=30"
    )
    assert Path(env["AIRFLOW__CORE__DAGS_FOLDER"]) == settings.dags_folder


def test_committed_paths_live_under_the_project_root(settings):
    for path in (settings.feature_repo, settings.gx_context_root, settings.dags_folder):
        assert path.is_relative_to(settings.project_root)
        assert not path.is_relative_to(settings.state_root)


def test_environment_overrides_top_level_and_nested_fields(clean_env, tmp_path):
    clean_env.setenv("MLOPS_STATE_ROOT", str(tmp_path))
    clean_env.setenv("MLOPS_PROFILE", "production")
    clean_env.setenv("MLOPS_SYNTHETIC__CUSTOMERS", "1234")
    clean_env.setenv("MLOPS_SYNTHETIC__DRIFT_START", "2026-01-05")
    clean_env.setenv("MLOPS_SYNTHETIC__DRIFT_FEATURES", '["sessions"]')
    clean_env.setenv("MLOPS_FEAST__MATERIALIZE_OVERLAP", "PT3H")

    settings = load_settings()

    assert settings.state_root == tmp_path
    assert settings.lake_root == tmp_path / "lake"
    assert settings.profile == "production"
    assert settings.synthetic.customers == 1234
    assert settings.synthetic.drift_start == date(2026, 1, 5)
    assert settings.synthetic.drift_features == ("sessions",)
    assert settings.feast.materialize_overlap == timedelta(hours=3)
    # Fields not named in the environment keep their defaults.
    assert settings.synthetic.seed == SyntheticSettings().seed
    assert settings.feast_project == settings.project.name == "demo"


def test_the_settings_fixture_comes_from_the_environment(settings, tmp_path):
    assert settings.state_root == tmp_path / "state"
    assert settings.synthetic.customers == 300


def test_settings_are_frozen(settings):
    with pytest.raises(ValidationError, match="frozen"):
        settings.profile = "production"
    with pytest.raises(ValidationError, match="frozen"):
        settings.state_root = Path("/elsewhere")


def test_sections_are_frozen(settings):
    with pytest.raises(ValidationError, match="frozen"):
        settings.synthetic.customers = 1
    with pytest.raises(ValidationError, match="frozen"):
        settings.feast.materialize_overlap = timedelta(0)


def test_typo_in_a_nested_environment_variable_is_an_error(clean_env):
    clean_env.setenv("MLOPS_SYNTHETIC__CUSTOMERZ", "10")

    with pytest.raises(ValidationError) as caught:
        load_settings()

    assert "synthetic.customerz" in str(caught.value)
    assert caught.value.errors()[0]["type"] == "extra_forbidden"


def test_unknown_keyword_is_an_error():
    with pytest.raises(ValidationError) as caught:
        Settings(unknown=1)

    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    assert caught.value.errors()[0]["loc"] == ("unknown",)


def test_unknown_nested_keyword_is_an_error():
    with pytest.raises(ValidationError) as caught:
        Settings(synthetic={"customerz": 5})

    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    assert caught.value.errors()[0]["loc"] == ("synthetic", "customerz")


def test_invalid_value_from_the_environment_is_an_error(clean_env):
    clean_env.setenv("MLOPS_SYNTHETIC__CUSTOMERS", "0")

    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        load_settings()


def test_unknown_profile_is_an_error(clean_env):
    clean_env.setenv("MLOPS_PROFILE", "staging")

    with pytest.raises(ValidationError, match="profile"):
        load_settings()


def test_relative_state_root_is_rejected():
    with pytest.raises(ValidationError, match="must be absolute"):
        Settings(state_root=Path("relative/state"))


def test_relative_state_root_from_the_environment_is_rejected(clean_env):
    clean_env.setenv("MLOPS_STATE_ROOT", "relative/state")

    with pytest.raises(ValidationError, match="must be absolute"):
        load_settings()


def test_relative_project_root_is_rejected(tmp_path):
    with pytest.raises(ValidationError, match="must be absolute"):
        Settings(state_root=tmp_path, project_root=Path("."))


def test_profile_picks_airflow_executor_and_metadata_database(tmp_path):
    embedded = Settings(state_root=tmp_path).airflow_env()
    assert embedded["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert embedded["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(f"sqlite:///{tmp_path}")

    production = Settings(state_root=tmp_path, profile="production").airflow_env()
    assert production["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert production["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert production["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    # Everything else (home, DAGs, auth) is the same in both profiles
    executor = {
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CORE__PARALLELISM",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__SCHEDULER__MP_START_METHOD",  # the embedded profile's preloading fork server
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD",
    }
    same = set(embedded) - executor
    assert {key: production[key] for key in same} == {key: embedded[key] for key in same}


def test_the_local_executor_is_sized_to_the_machine_unless_told(tmp_path, monkeypatch):
    # Given no parallelism setting, the LocalExecutor gets one worker per core
    monkeypatch.setattr("pipelines.settings.usable_cores", lambda: 6)
    assert Settings(state_root=tmp_path).airflow_env()["AIRFLOW__CORE__PARALLELISM"] == "6"
    # and a setting wins
    sized = Settings(state_root=tmp_path, airflow={"parallelism": 3}).airflow_env()
    assert sized["AIRFLOW__CORE__PARALLELISM"] == "3"
    # Celery's total across workers stays Airflow's unless set
    celery = Settings(state_root=tmp_path, profile="production").airflow_env()
    assert "AIRFLOW__CORE__PARALLELISM" not in celery


def test_registry_lock_is_on_postgres_when_the_registry_is_shared(tmp_path):
    assert Settings(state_root=tmp_path).registry_lock_url is None
    on_postgres = Settings(
        state_root=tmp_path, mlflow={"tracking_uri": "postgresql://db/mlflow"}
    ).registry_lock_url
    assert on_postgres == "postgresql://db/mlflow"
    behind_server = Settings(
        state_root=tmp_path,
        mlflow={"tracking_uri": "http://mlflow:5000", "lock_url": "postgresql://db/mlflow"},
    )
    assert behind_server.registry_lock_url == "postgresql://db/mlflow"
