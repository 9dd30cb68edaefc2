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
    # snapshot: one full row per entity per day (its own feature table); events: any number
    # of rows per entity at any time, aggregated nightly into feature rows (`aggregations`).
    shape: Literal["snapshot", "events"] = "snapshot"
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

    @model_validator(mode="after")
    def _a_snapshot_has_columns(self) -> SourceSpec:
        if self.shape == "snapshot" and not self.columns:
            raise ValueError("a snapshot source declares at least one column")
        return self


AggregationFunction = Literal[
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "last",
    "distinct_count",
    "days_since_first",
    "days_since_last",
]
# Functions over a window of days, and those over every event up to the night.
WINDOWED = {"count", "sum", "mean", "min", "max", "distinct_count"}
NO_COLUMN = {"count", "days_since_first", "days_since_last"}
NUMERIC_ONLY = {"sum", "mean", "min", "max"}


class Aggregation(_Spec):
    """One feature built from events: a function of a column over a named window."""

    function: AggregationFunction
    column: Identifier | None = None
    window: Identifier | None = None

    @model_validator(mode="after")
    def _arguments_fit_the_function(self) -> Aggregation:
        if (self.column is None) != (self.function in NO_COLUMN):
            needs = "takes no column" if self.function in NO_COLUMN else "needs a column"
            raise ValueError(f"{self.function} {needs}")
        if (self.window is None) == (self.function in WINDOWED):
            needs = "needs a window" if self.function in WINDOWED else "takes no window"
            raise ValueError(f"{self.function} {needs}")
        return self


class Aggregations(_Spec):
    """How an events source becomes one feature row per entity per night."""

    # Named windows in days: an event of day E counts for night D when D - days < E <= D.
    windows: dict[Identifier, int]
    # Entities with an event within this many days get a row every night (scored from
    # their state even on nights without events).
    active_days: int = Field(ge=1)
    features: dict[Identifier, Aggregation]

    @field_validator("windows")
    @classmethod
    def _positive_windows(cls, value: dict[str, int]) -> dict[str, int]:
        if not value or min(value.values()) < 1:
            raise ValueError("declare at least one window, each of one day or more")
        return value


class DerivedLabel(_Spec):
    """A label computed from later events rather than landed."""

    # 1 when the entity has an event within this many days after the prediction time.
    event_within_days: int = Field(ge=1)


class LabelSpec(_Spec):
    """The outcome the model predicts: a 0/1 column of a dataset that lands later, or is
    derived from later events."""

    dataset: Identifier = "labels"
    column: Identifier
    derived: DerivedLabel | None = None


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
    """The registered model: its name, features, hyperparameters, promotion gate, and the
    intended use and limitations its model card states."""

    name: Identifier
    feature_service: Identifier
    description: str = ""
    # Source columns the model uses, in order; empty: every column of the source.
    features: tuple[Identifier, ...] = ()
    hyperparameters: dict[str, float | int | str]
    gate: tuple[MetricThreshold, ...]
    # What the model is for, and where it must not be trusted: said on every model card.
    intended_use: str = ""
    limitations: tuple[str, ...] = ()

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


DriftPolicyName = Literal["monitored", "ignored", "monotone"]


class DriftPolicy(_Spec):
    """How drift monitoring treats each feature."""

    # monitored: its drift may alarm; ignored: not measured; monotone: it grows with time
    # by nature (an age, a running total), so its drift is reported but never alarms.
    default: DriftPolicyName = "monitored"
    features: dict[Identifier, DriftPolicyName] = {}

    def of(self, feature: str) -> DriftPolicyName:
        """The policy of one feature."""
        return self.features.get(feature, self.default)


class Project(_Spec):
    """Everything that differs between one team's data and another's."""

    name: Identifier
    description: str = ""
    entity: EntitySpec
    source: SourceSpec
    label: LabelSpec
    aggregations: Aggregations | None = None
    model: ModelSpec
    scoring: ScoringOutputs
    drift: DriftPolicy = DriftPolicy()

    @model_validator(mode="after")
    def _names_agree(self) -> Project:
        columns = self.source.columns
        clashes = {self.entity.column, self.source.timestamp} & set(columns)
        if clashes:
            raise ValueError(f"source.columns repeats a key column: {sorted(clashes)}")
        if (self.aggregations is None) != (self.source.shape == "snapshot"):
            raise ValueError("an events source needs aggregations; a snapshot source has none")
        if self.label.derived is not None and self.source.shape != "events":
            raise ValueError("label.derived needs an events source")
        if self.aggregations is not None:
            _check_aggregations(self.aggregations, columns)
        unknown = [name for name in self.model.features if name not in self.feature_columns]
        if unknown:
            raise ValueError(f"model.features names columns the feature table lacks: {unknown}")
        unknown = [name for name in self.drift.features if name not in self.features]
        if unknown:
            raise ValueError(f"drift.features names features the model lacks: {unknown}")
        return self

    @property
    def feature_columns(self) -> dict[str, ColumnType]:
        """Columns of the nightly feature table and their types: the source's own for a
        snapshot, the aggregations' for events."""
        if self.aggregations is None:
            return {name: spec.type for name, spec in self.source.columns.items()}
        return {
            name: aggregation_type(item, self.source.columns)
            for name, item in self.aggregations.features.items()
        }

    @property
    def features(self) -> tuple[str, ...]:
        """The model's feature columns, in order."""
        return self.model.features or tuple(self.feature_columns)

    @property
    def feature_dataset(self) -> str:
        """The validated dataset of daily feature rows Feast, scoring and drift read (a
        snapshot source is its own)."""
        if self.source.shape == "snapshot":
            return self.source.dataset
        return f"{self.source.dataset}_features"

    @property
    def raw_suite(self) -> str:
        """Expectation suite (and checkpoint) of one landed raw partition."""
        return f"{self.source.dataset}_partition"

    @property
    def training_suite(self) -> str:
        """Expectation suite (and checkpoint) of a point-in-time training set."""
        return "training_set"


def aggregation_type(item: Aggregation, columns: dict[str, ColumnSpec]) -> ColumnType:
    """The type of a built feature: counts and day counts are integers, means are floats,
    sums follow their column, min, max and last keep it."""
    if item.function in NO_COLUMN or item.function == "distinct_count":
        return "int64"
    if item.function == "mean":
        return "float64"
    assert item.column is not None  # checked when the project loads
    return columns[item.column].type


def _check_aggregations(aggregations: Aggregations, columns: dict[str, ColumnSpec]) -> None:
    """Every aggregation names a declared column of a type it can aggregate, and a window."""
    for name, item in aggregations.features.items():
        if item.column is not None and item.column not in columns:
            raise ValueError(f"aggregations.features.{name}: no source column {item.column!r}")
        if item.window is not None and item.window not in aggregations.windows:
            raise ValueError(f"aggregations.features.{name}: no window {item.window!r}")
        if item.function in NUMERIC_ONLY and item.column is not None:
            kind = columns[item.column].type
            if kind not in ("int64", "float64"):
                raise ValueError(f"aggregations.features.{name}: {item.function} of {kind}")


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
        with path.open(encoding="utf-8") as stream:  # YAML's errors then name the file
            document: Any = yaml.safe_load(stream)
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
            f"{'.'.join(str(p) for p in item['loc']) or 'project'}: "
            + item["msg"].removeprefix("Value error, ")
            for item in error.errors()
        )
        raise ConfigurationError(f"{path}: {problems}") from None
