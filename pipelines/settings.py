"""One frozen settings object: every path, URI and knob of the pipeline, and the selected project.

Values come from defaults, then environment variables prefixed ``MLOPS_``
(nested fields with ``__``, e.g. ``MLOPS_SYNTHETIC__CUSTOMERS=1000``). A typo in
a variable name under a known section is an error, not a silent default.
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipelines.contracts import ScheduleSettings
from pipelines.errors import ConfigurationError
from pipelines.project import Project, load_project

PROJECT_ROOT = Path(__file__).resolve().parents[1]

Profile = Literal["embedded", "production"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SyntheticSettings(_Section):
    """Knobs of the generated demo world (deterministic by seed)."""

    seed: int = 7
    customers: int = Field(default=5_000, ge=1)
    start_date: date = date(2026, 1, 1)
    days: int = Field(default=46, ge=1)
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
    # A partition whose day ends later than now plus this is refused: a mis-dated night
    # would otherwise win the online store's newest-value rule for good.
    future_tolerance: timedelta = timedelta(days=1)


class FeastSettings(_Section):
    """Feature store project and materialization knobs."""

    # Empty: the project's name. Production deployments sharing a registry or Redis set it.
    project: str = ""
    materialize_overlap: timedelta = timedelta(hours=1)
    online_write_batch_rows: int = Field(default=20_000, ge=1)
    redis_connection: str = "127.0.0.1:6379"
    registry_sql_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/feast"


class TrainingSettings(_Section):
    """How every model is trained: the window, splits and checks of its training set."""

    window_days: int = Field(default=21, ge=3)
    validation_share: float = Field(default=0.15, gt=0.0, lt=0.5)
    holdout_share: float = Field(default=0.15, gt=0.0, lt=0.5)
    min_rows: int = Field(default=1_000, ge=1)
    min_label_share: float = Field(default=0.01, ge=0.0, le=1.0)
    max_label_share: float = Field(default=0.6, ge=0.0, le=1.0)
    min_feature_coverage: float = Field(default=0.9, ge=0.0, le=1.0)
    profile_bins: int = Field(default=10, ge=2)
    random_seed: int = 13
    # Labels per Feast point-in-time join: its memory grows with labels times history,
    # its time with calls (each reads the whole source).
    labels_per_join: int = Field(default=50_000, ge=1)


class GateSettings(_Section):
    """Evaluation gate, infra check and approval before an alias moves."""

    infra_check_rows: int = Field(default=500, ge=1)
    max_model_megabytes: float = Field(default=50.0, gt=0.0)
    require_approval: bool = False


class ScoringSettings(_Section):
    """Nightly batch scoring: sharding and shadow scoring (outputs are the project's)."""

    shard_rows: int = Field(default=250_000, ge=1)
    max_shards: int = Field(default=32, ge=1)
    shadow: bool = True


class DriftLevels(_Section):
    """Warning and alert levels of one drift metric (higher is more drift)."""

    warning: float = Field(ge=0.0)
    alert: float = Field(ge=0.0)


class DriftSettings(_Section):
    """Drift monitoring: metric levels, reference profile size, sample-size guard, retraining.

    A numeric feature has two metrics: PSI on the reference's quantile bins, and the
    Wasserstein distance in reference standard deviations (Evidently's "Wasserstein distance
    (normed)"; its default drift threshold, 0.1, is the alert level). Its level is the worse
    of the two (the latter's from `numeric_wasserstein_min_rows` rows on). The ``profile_*``
    fields size the reference quantile function that distance is computed from; they are
    read when a model's profile is built, at training time.
    """

    numeric_psi: DriftLevels = DriftLevels(warning=0.1, alert=0.25)
    numeric_wasserstein: DriftLevels = DriftLevels(warning=0.05, alert=0.1)
    # Below this many rows today the normed Wasserstein distance is reported but sets no
    # level: it has no sample-size correction, and on quiet generated nights its noise
    # peaks near 0.15 at 500 rows, 0.10 at 1,000, 0.07 at 2,000 and 0.04 at 5,000.
    numeric_wasserstein_min_rows: int = Field(default=2_000, ge=1)
    categorical_js: DriftLevels = DriftLevels(warning=0.1, alert=0.2)
    prediction_psi: DriftLevels = DriftLevels(warning=0.1, alert=0.2)
    roc_auc_drop: DriftLevels = DriftLevels(warning=0.03, alert=0.07)
    # Evenly spaced quantiles, plus log-spaced ones in each tail (down to 1e-6), plus both
    # ends of the most frequent values and of the widest gaps between values (exact for
    # counts with up to that many values).
    profile_quantiles: int = Field(default=101, ge=3)
    profile_tail_quantiles: int = Field(default=12, ge=0)
    profile_steps: int = Field(default=100, ge=0)
    min_rows: int = Field(default=500, ge=1)
    min_labelled_rows: int = Field(default=500, ge=1)
    min_drifted_features: int = Field(default=2, ge=1)
    retrain_cooldown: timedelta = timedelta(days=7)


class MlflowSettings(_Section):
    """Tracking and registry; empty URIs mean the embedded SQLite backend under the state root.

    Alias moves are serialized by a lock: a Postgres advisory lock on `lock_url` when set
    (or on the registry itself when it is Postgres), which holds across hosts; otherwise a
    file lock under the state root, which holds on one host.
    """

    tracking_uri: str = ""
    registry_uri: str = ""
    lock_url: str = ""


class AirflowSettings(_Section):
    """Airflow's executor and metadata database in the `production` profile, and its size.

    The `embedded` profile always runs the LocalExecutor on SQLite under the state root.
    """

    # Task instances running at once: in `embedded`, the LocalExecutor's worker processes
    # (empty: the machine's core count); in `production`, across all Celery workers (empty:
    # Airflow's default).
    parallelism: int | None = Field(default=None, ge=1)
    # In `embedded`, the executor's workers fork from a server that imported the tasks'
    # libraries once (`pipelines.io.preload`): a task starts without seconds of imports.
    preload_task_libraries: bool = True
    metadata_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/airflow"
    celery_broker_url: str = "redis://127.0.0.1:6379/0"
    celery_result_backend: str = "db+postgresql+psycopg2://postgres@127.0.0.1:5432/airflow"
    worker_concurrency: int = Field(default=2, ge=1)
    # Where the API server (UI and REST API) listens when the project's commands start it
    # (`python -m pipelines ui`, `... airflow -- api-server`): this machine only unless told
    # otherwise (0.0.0.0: every interface).
    ui_host: str = "127.0.0.1"
    ui_port: int = Field(default=8080, ge=1, le=65535)

    @property
    def ui_url(self) -> str:
        """Where the API server answers on this machine (loopback when it listens on all)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.ui_host, self.ui_host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.ui_port}"


class ServingSettings(_Section):
    """The online scoring service (`python -m pipelines serve`)."""

    # This machine only unless told otherwise (0.0.0.0: every interface).
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # The bearer token every scoring request must carry. Empty: one generated on first
    # start into `serving_token_file` (the owner's alone to read).
    token: str = ""
    max_entities: int = Field(default=1_000, ge=1)
    max_body_bytes: int = Field(default=65_536, ge=1_024)
    # How often the service asks the registry where the champion alias points.
    poll_seconds: float = Field(default=10.0, gt=0.0)
    # Serve as of this time instead of the clock's now: features older than the feature
    # view's TTL before it are stale (a replayed history, a test of a past night).
    as_of: AwareDatetime | None = None


class AlertSettings(_Section):
    """Where failure alerts go: always the log and the alert file, optionally a webhook."""

    webhook_url: str | None = None
    webhook_timeout_seconds: float = 5.0


class Settings(BaseSettings):
    """Every knob of the pipeline; build once per process with `load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_",
        env_nested_delimiter="__",
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
    )

    profile: Profile = "embedded"
    project_root: Path = PROJECT_ROOT
    state_root: Path = PROJECT_ROOT / ".state"
    schedule: ScheduleSettings = ScheduleSettings()
    # The project: a name under `projects/`, or the path of a project folder or file.
    project: Annotated[Project, NoDecode] = Field(default_factory=lambda: load_project("demo"))
    synthetic: SyntheticSettings = SyntheticSettings()
    validation: ValidationSettings = ValidationSettings()
    feast: FeastSettings = FeastSettings()
    alerts: AlertSettings = AlertSettings()
    training: TrainingSettings = TrainingSettings()
    gate: GateSettings = GateSettings()
    scoring: ScoringSettings = ScoringSettings()
    drift: DriftSettings = DriftSettings()
    mlflow: MlflowSettings = MlflowSettings()
    airflow: AirflowSettings = AirflowSettings()
    serving: ServingSettings = ServingSettings()
    # Fault injection for the crash suite: the process kills itself (SIGKILL) on reaching
    # the named point (see `pipelines.faults`). Empty in any real deployment.
    crash_point: str = ""

    @field_validator("project", mode="before")
    @classmethod
    def _load_the_project(cls, value: object) -> object:
        if isinstance(value, (str, Path)):
            try:
                return load_project(value)
            except ConfigurationError as error:
                raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        if not self.state_root.is_absolute() or not self.project_root.is_absolute():
            raise ValueError("state_root and project_root must be absolute paths")
        return self

    # Paths of the state root: everything the pipeline writes lives below it.
    @property
    def feast_project(self) -> str:
        """The Feast project: the setting, else the project's name."""
        return self.feast.project or self.project.name

    @property
    def lake_root(self) -> Path:
        return self.state_root / "lake"

    @property
    def raw_root(self) -> Path:
        return self.lake_root / "raw"

    @property
    def validated_root(self) -> Path:
        return self.lake_root / "validated"

    @property
    def quarantine_root(self) -> Path:
        return self.lake_root / "quarantine"

    @property
    def feast_root(self) -> Path:
        return self.state_root / "feast"

    @property
    def gx_state_root(self) -> Path:
        return self.state_root / "gx"

    @property
    def data_docs_index(self) -> Path:
        return self.gx_state_root / "data_docs" / "index.html"

    @property
    def mlflow_root(self) -> Path:
        return self.state_root / "mlflow"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.mlflow_root / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        return self.mlflow.registry_uri or self.tracking_uri

    @property
    def registry_lock_url(self) -> str | None:
        """Postgres database whose advisory lock serializes alias moves, if any."""
        if self.mlflow.lock_url:
            return self.mlflow.lock_url
        return self.registry_uri if self.registry_uri.startswith("postgresql") else None

    @property
    def airflow_home(self) -> Path:
        return self.state_root / "airflow"

    @property
    def serving_token_file(self) -> Path:
        return self.state_root / "serving" / "token"

    @property
    def alerts_file(self) -> Path:
        return self.state_root / "alerts" / "alerts.jsonl"

    # Paths of the committed repository.
    @property
    def feature_repo(self) -> Path:
        return self.project_root / "feature_repo"

    @property
    def gx_context_root(self) -> Path:
        return self.project_root / "great_expectations"

    @property
    def dags_folder(self) -> Path:
        return self.project_root / "dags"

    def airflow_env(self) -> dict[str, str]:
        """Environment that points Airflow at this project's DAGs and state root."""
        home = self.airflow_home
        return {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                home / "simple_auth_manager_passwords.json"
            ),
            "AIRFLOW__API__HOST": self.airflow.ui_host,
            "AIRFLOW__API__PORT": str(self.airflow.ui_port),
            # Tasks report to the API server where it listens (Airflow assumes :8080).
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow.ui_url}/execution/",
            # The lake as a filesystem connection: where `check_landed` looks for nights.
            "AIRFLOW_CONN_LAKE": json.dumps(
                {"conn_type": "fs", "extra": {"path": str(self.lake_root)}}
            ),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(self.project_root), os.environ.get("PYTHONPATH", "")) if p
            ),
        } | self._airflow_executor_env()

    def _preload_env(self) -> dict[str, str]:
        """The scheduler's executor workers fork from a server that imported the tasks'
        libraries, and each task forks from a worker (Airflow 3.3's fork-server preload)."""
        if not self.airflow.preload_task_libraries:
            return {}
        return {
            "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
            "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": "pipelines.io.preload",
        }

    def _airflow_executor_env(self) -> dict[str, str]:
        """Executor and metadata database of the settings' profile."""
        parallelism = self.airflow.parallelism
        if self.profile == "embedded":
            database = self.airflow_home / "airflow.db"
            return {
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(parallelism or usable_cores()),
                # Four components and the tasks write to one SQLite file: wait up to 30 s
                # for its lock (SQLite's default is 5) rather than fail a request.
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{database}?timeout=30",
            } | self._preload_env()
        sized = {"AIRFLOW__CORE__PARALLELISM": str(parallelism)} if parallelism else {}
        return sized | {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.airflow.metadata_url,
            "AIRFLOW__CELERY__BROKER_URL": self.airflow.celery_broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": self.airflow.celery_result_backend,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.airflow.worker_concurrency),
        }


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_settings() -> Settings:
    """Settings from defaults and the ``MLOPS_`` environment."""
    return Settings()
