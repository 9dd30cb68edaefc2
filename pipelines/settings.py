"""One frozen settings object: every path, URI, name and threshold of the pipeline.

Values come from defaults, then environment variables prefixed ``MLOPS_``
(nested fields with ``__``, e.g. ``MLOPS_SYNTHETIC__CUSTOMERS=1000``). A typo in
a variable name under a known section is an error, not a silent default.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]

Profile = Literal["embedded", "production"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetSettings(_Section):
    """Names of the data contract: the only place the demo world's columns are named."""

    entity: str = "customer_id"
    timestamp: str = "event_timestamp"
    raw_dataset: str = "activity"
    label_dataset: str = "labels"
    label: str = "churned"
    feature_view: str = "customer_activity"
    feature_service: str = "churn_model_v1"
    expectation_suite: str = "activity_partition"
    checkpoint: str = "activity_partition"


class SyntheticSettings(_Section):
    """Knobs of the generated demo world (deterministic by seed)."""

    seed: int = 7
    customers: int = Field(default=5_000, ge=1)
    start_date: date = date(2026, 1, 1)
    days: int = Field(default=7, ge=1)
    label_delay_days: int = Field(default=30, ge=0)
    drift_start: date | None = None
    drift_features: tuple[str, ...] = ("usage_minutes", "sessions")
    drift_magnitude: float = Field(default=0.6, ge=0.0)
    concept_drift_start: date | None = None
    concept_drift_strength: float = Field(default=1.0, ge=0.0)


class ValidationSettings(_Section):
    """Bounds handed to the expectation suite as parameters at run time."""

    min_rows: int = Field(default=1, ge=0)
    max_rows: int = Field(default=50_000_000, ge=1)


class FeastSettings(_Section):
    """Feature store project and materialization knobs."""

    project: str = "churn"
    materialize_overlap: timedelta = timedelta(hours=1)
    online_write_batch_rows: int = Field(default=20_000, ge=1)
    redis_connection: str = "127.0.0.1:6379"
    registry_sql_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/feast"


class AlertSettings(_Section):
    """Where failure alerts go: always the log and the alert file, optionally a webhook."""

    webhook_url: str | None = None
    webhook_timeout_seconds: float = 5.0


class Settings(BaseSettings):
    """Every knob of the pipeline; build once per process with `load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    profile: Profile = "embedded"
    project_root: Path = PROJECT_ROOT
    state_root: Path = PROJECT_ROOT / ".state"
    dataset: DatasetSettings = DatasetSettings()
    synthetic: SyntheticSettings = SyntheticSettings()
    validation: ValidationSettings = ValidationSettings()
    feast: FeastSettings = FeastSettings()
    alerts: AlertSettings = AlertSettings()

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        if not self.state_root.is_absolute() or not self.project_root.is_absolute():
            raise ValueError("state_root and project_root must be absolute paths")
        return self

    # Paths of the state root: everything the pipeline writes lives below it.
    @cached_property
    def lake_root(self) -> Path:
        return self.state_root / "lake"

    @cached_property
    def raw_root(self) -> Path:
        return self.lake_root / "raw"

    @cached_property
    def validated_root(self) -> Path:
        return self.lake_root / "validated"

    @cached_property
    def quarantine_root(self) -> Path:
        return self.lake_root / "quarantine"

    @cached_property
    def feast_root(self) -> Path:
        return self.state_root / "feast"

    @cached_property
    def gx_state_root(self) -> Path:
        return self.state_root / "gx"

    @cached_property
    def data_docs_index(self) -> Path:
        return self.gx_state_root / "data_docs" / "index.html"

    @cached_property
    def airflow_home(self) -> Path:
        return self.state_root / "airflow"

    @cached_property
    def alerts_file(self) -> Path:
        return self.state_root / "alerts" / "alerts.jsonl"

    # Paths of the committed repository.
    @cached_property
    def feature_repo(self) -> Path:
        return self.project_root / "feature_repo"

    @cached_property
    def gx_context_root(self) -> Path:
        return self.project_root / "great_expectations"

    @cached_property
    def dags_folder(self) -> Path:
        return self.project_root / "dags"

    def airflow_env(self) -> dict[str, str]:
        """Environment that points Airflow at this project's DAGs and state root."""
        home = self.airflow_home
        return {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                home / "simple_auth_manager_passwords.json"
            ),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(self.project_root), os.environ.get("PYTHONPATH", "")) if p
            ),
        }


def load_settings() -> Settings:
    """Settings from defaults and the ``MLOPS_`` environment."""
    return Settings()
