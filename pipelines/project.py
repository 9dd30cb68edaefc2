"""A project: one folder of configuration (`projects/<name>/project.yaml`) that declares the
data contract, the model, its gate and its outputs.

No module of `pipelines/` names a column of any project: they read it from here. The Great
Expectations suites (`pipelines.io.expectations`) and the Feast objects (`feature_repo/`)
are derived from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines import contracts
from pipelines.errors import ConfigurationError

PROJECTS_ROOT = Path(__file__).resolve().parents[1] / "projects"
PROJECT_FILE = "project.yaml"

ColumnType = Literal["int64", "float64", "string", "bool", "timestamp"]
EntityType = Literal["int64", "string"]
# Names Feast, MLflow and SQL all accept.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnSpec(_Spec):
    """One raw column: its type and the values the gate accepts."""

    type: ColumnType
    description: str = ""
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    # Share of rows that may be null (0: never null).
    max_null_share: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _bounds_fit_the_type(self) -> ColumnSpec:
        numeric = self.type in ("int64", "float64")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min and max apply to numbers, not to {self.type}")
        if self.categories is not None and self.type != "string":
            raise ValueError(f"categories apply to strings, not to {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class EntitySpec(_Spec):
    """What a row is about: the Feast entity and its join key column."""

    name: Identifier
    column: Identifier
    type: EntityType = "int64"
    description: str = ""
    min: float | None = None

    @model_validator(mode="after")
    def _min_bounds_numbers(self) -> EntitySpec:
        if self.min is not None and self.type != "int64":
            raise ValueError(f"min applies to int64 ids, not to {self.type}")
        return self


class SourceSpec(_Spec):
    """The raw dataset that lands each day, and the feature view served from it."""

    dataset: Identifier
    shape: Literal["snapshot"] = "snapshot"
    timestamp: Identifier = "event_timestamp"
    timezone: str = "UTC"
    feature_view: Identifier
    # A value older than this is too stale to serve (the feature view's TTL).
    ttl_days: int = Field(default=7, ge=1)
    description: str = ""
    columns: dict[Identifier, ColumnSpec]

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. UTC)") from None
        return value

    @field_validator("columns")
    @classmethod
    def _some_columns(cls, value: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        if not value:
            raise ValueError("a source declares at least one column")
        return value


class LabelSpec(_Spec):
    """The outcome the model predicts: a 0/1 column of a dataset that lands later."""

    dataset: Identifier = "labels"
    column: Identifier


class MetricThreshold(_Spec):
    """A gate on one metric, with the semantics of MLflow's `MetricThreshold`.

    `threshold` is a value floor (ceiling when lower is better). The change
    thresholds compare with the champion: the candidate must beat it by at least
    `min_absolute_change` (or `min_relative_change` times its magnitude); 0
    means "no worse than the champion".
    """

    metric: str
    greater_is_better: bool
    threshold: float | None = None
    min_absolute_change: float | None = Field(default=None, ge=0.0)
    min_relative_change: float | None = Field(default=None, ge=0.0, le=1.0)


class ModelSpec(_Spec):
    """The registered model: its name, features, hyperparameters and promotion gate."""

    name: Identifier
    feature_service: Identifier
    description: str = ""
    # Source columns the model uses, in order; empty: every column of the source.
    features: tuple[Identifier, ...] = ()
    hyperparameters: dict[str, float | int | str]
    gate: tuple[MetricThreshold, ...]

    @field_validator("hyperparameters")
    @classmethod
    def _within_the_contracts_bounds(
        cls, value: dict[str, float | int | str]
    ) -> dict[str, float | int | str]:
        """Known names within `contracts.HYPERPARAMETER_BOUNDS` (the bounds a run's
        overrides are held to)."""
        try:
            return contracts.check_hyperparameters(value, "model.hyperparameters")
        except ConfigurationError as error:
            raise ValueError(str(error)) from None

    @field_validator("gate")
    @classmethod
    def _metrics_training_measures(
        cls, value: tuple[MetricThreshold, ...]
    ) -> tuple[MetricThreshold, ...]:
        """Each rule judges a metric training measures, within the bounds a run's gate
        overrides are held to (`contracts.GATE_METRIC_RANGES`)."""
        for rule in value:
            limits = rule.model_dump(exclude={"metric", "greater_is_better"}, exclude_none=True)
            try:
                contracts.check_gate_overrides({rule.metric: limits}, field="model.gate")
            except ConfigurationError as error:
                raise ValueError(str(error)) from None
        return value


class ScoringOutputs(_Spec):
    """Columns of a published predictions partition, and the decision threshold."""

    score_column: Identifier
    predicted_label_column: Identifier
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)


class Project(_Spec):
    """Everything that differs between one team's data and another's."""

    name: Identifier
    description: str = ""
    entity: EntitySpec
    source: SourceSpec
    label: LabelSpec
    model: ModelSpec
    scoring: ScoringOutputs

    @model_validator(mode="after")
    def _names_agree(self) -> Project:
        columns = self.source.columns
        clashes = {self.entity.column, self.source.timestamp} & set(columns)
        if clashes:
            raise ValueError(f"source.columns repeats a key column: {sorted(clashes)}")
        unknown = [name for name in self.model.features if name not in columns]
        if unknown:
            raise ValueError(f"model.features names columns the source lacks: {unknown}")
        return self

    @property
    def features(self) -> tuple[str, ...]:
        """The model's feature columns, in order."""
        return self.model.features or tuple(self.source.columns)

    @property
    def feature_dataset(self) -> str:
        """The validated dataset of daily feature rows Feast, scoring and drift read (a
        snapshot source is its own)."""
        return self.source.dataset

    @property
    def raw_suite(self) -> str:
        """Expectation suite (and checkpoint) of one landed raw partition."""
        return f"{self.source.dataset}_partition"

    @property
    def training_suite(self) -> str:
        """Expectation suite (and checkpoint) of a point-in-time training set."""
        return "training_set"


def project_file(reference: str | Path) -> Path:
    """The `project.yaml` a project name (a folder of `projects/`) or path refers to."""
    path = Path(reference)
    if len(path.parts) == 1 and not path.suffix:
        path = PROJECTS_ROOT / path
    return path if path.suffix in (".yaml", ".yml") else path / PROJECT_FILE


def load_project(reference: str | Path) -> Project:
    """The project a name or path refers to, checked; a clear error names what is wrong."""
    path = project_file(reference)
    try:
        document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = sorted(p.name for p in PROJECTS_ROOT.iterdir() if (p / PROJECT_FILE).is_file())
        raise ConfigurationError(
            f"no project at {path} (projects of this repository: {', '.join(known)})"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{path} is not valid YAML: {error}") from None
    try:
        return Project.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'project'}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigurationError(f"{path}: {problems}") from None
