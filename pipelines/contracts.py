"""What the DAG files and the pipeline share, in the standard library only.

DAG files import this module and Airflow, nothing else, so the dag-processor parses
them in a fraction of a second. It holds the asset names, the partition key of a
night, the nightly schedule's settings (read from the same ``MLOPS_SCHEDULE__*``
variables as `pipelines.settings`), the errors no retry can fix, and what a
`training` request may ask for: the JSON schemas of the training DAG's Params and
`validate_training_request`, which checks the same rules (and what JSON schema cannot
say) for the DAG's first task and the CLI.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, Self, cast

from pipelines import errors

# Assets: each event carries the night it is about as its partition key.
FEATURES = "features"
PREDICTIONS = "predictions"
RETRAIN_REQUEST = "retrain_request"
MODEL_PROMOTED = "model_promoted"

# A night's partition key is its calendar day in UTC: the key of `features`,
# `predictions` and every nightly run (and what the UI shows beside the run).
PARTITION_KEY_FORMAT = "%Y-%m-%d"
SCHEDULE_TIMEZONE = "UTC"
NIGHTLY_CRON = "0 0 * * *"
WEEKLY_TRAINING_CRON = "0 3 * * 0"

# The base class of every error retrying cannot fix, by the dotted name retry policies take.
PERMANENT_ERROR = f"{errors.__name__}.{errors.PermanentError.__name__}"
# A `training` run started by a drift alarm: one run id per night, so a rerun of the night
# starts no second one.
RETRAIN_RUN_PREFIX = "retrain_request__"
# Longest reason a `training` run takes (its form's `reason`).
MAX_REASON_CHARS = 500

SCHEDULE_ENV_PREFIX = "MLOPS_SCHEDULE__"


@dataclass(frozen=True)
class ScheduleSettings:
    """When the nightly DAGs run: `Settings.schedule`, also read at DAG-parse time."""

    # First night the schedule processes; empty: the latest complete night when the DAG is
    # first scheduled. Older nights load with `airflow backfill create`.
    start_date: date | None = None
    # How often `check_landed` looks for a night's partition, and how long it waits (seconds).
    landing_poke_interval_seconds: int = 300
    landing_timeout_seconds: int = 6 * 3600

    def __post_init__(self) -> None:
        if self.landing_poke_interval_seconds < 1 or self.landing_timeout_seconds < 1:
            raise ValueError("the landing poke interval and timeout must be at least 1 second")


# A calendar day as text: exactly YYYY-MM-DD (`date.fromisoformat` alone also takes
# "20260105" and "2026-W02-1", `strptime` also takes "2026-1-5").
DAY_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DAY = re.compile(DAY_PATTERN)  # used with fullmatch: no trailing newline either


def partition_key(day: date) -> str:
    """The partition key of a night."""
    return day.strftime(PARTITION_KEY_FORMAT)


def strict_day(text: object) -> date | None:
    """The calendar day `text` names as exactly YYYY-MM-DD, or None."""
    if not isinstance(text, str) or not _DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:  # 2026-02-30
        return None


def night(key: str | None) -> date:
    """The night a partition key names; a run without one gets an error saying what to do."""
    if not key:
        raise errors.MissingPartitionKeyError(
            "this run has no partition key: trigger it with the night it is about as its "
            "partition key (YYYY-MM-DD), or let the `features` asset trigger it"
        )
    day = strict_day(key)
    if day is None:
        raise errors.MissingPartitionKeyError(
            f"partition key {errors.shown(key, 40)} is not a night: use YYYY-MM-DD"
        )
    return day


def as_night(value: str | date | datetime | None) -> date:
    """The night a job is about: a date, or a run's partition key (strict YYYY-MM-DD)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return night(value)


# The time rule: night D (a UTC calendar day) is scored as of the midnight that ends it,
# from features no later than that moment; its label is stamped with that same moment.
#
# The label rule: the label of night D (the outcome its predictions are judged by) has the
# timestamp of the midnight (UTC) after D, and lands in the label partition of a day on or
# after D (labels lag); one label partition may hold the labels of several nights.
NIGHT = timedelta(days=1)


def night_start(day: date) -> datetime:
    """The midnight (UTC) that starts a night."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def midnight_after(day: date) -> datetime:
    """The time rule: a night's features and labels are as of the midnight (UTC) after it."""
    return night_start(day) + NIGHT


def night_interval(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a night in UTC: the event timestamps of its partition."""
    return night_start(day), midnight_after(day)


def label_time(day: date) -> datetime:
    """The timestamp of a label of night D: the midnight (UTC) after it (the label rule)."""
    return midnight_after(day)


def labelled_night(stamp: datetime, landed_on: date) -> date:
    """The night a label is about, from its timestamp and the day its partition landed; a
    label that breaks the label rule raises a `DataQualityError` saying how."""
    if stamp.tzinfo is None:
        raise errors.DataQualityError(
            f"label timestamp {stamp.isoformat()} has no time zone: a label is stamped with "
            "the midnight (UTC) after its night"
        )
    moment = stamp.astimezone(UTC)
    day = (moment - NIGHT).date()
    if moment != label_time(day):
        raise errors.DataQualityError(
            f"label timestamp {moment.isoformat()} is not a midnight (UTC): a label is stamped "
            "with the midnight after its night"
        )
    if day > landed_on:
        raise errors.DataQualityError(
            f"a label of night {day.isoformat()} landed on {landed_on.isoformat()}: labels "
            "land on or after their night"
        )
    return day


# Registry aliases: the model that scores, the one it replaced, and a rejected candidate.
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"
CHALLENGER = "challenger"


def training_experiment(model_name: str) -> str:
    """The MLflow experiment of a model's training runs."""
    return model_name


def drift_experiment(model_name: str) -> str:
    """The MLflow experiment of a model's nightly drift checks."""
    return f"{model_name}-drift"


def shadow_experiment(model_name: str) -> str:
    """The MLflow experiment of a model's shadow scoring."""
    return f"{model_name}-shadow"


def audit_experiment(model_name: str) -> str:
    """The MLflow experiment of a model's registry journal (one run per alias change)."""
    return f"{model_name}-registry-audit"


def first_scheduled_run(schedule: ScheduleSettings) -> datetime | None:
    """Airflow `start_date` of the nightly DAG: the run at the midnight after the first night."""
    return midnight_after(schedule.start_date) if schedule.start_date else None


def retrain_run_id(night: str) -> str:
    """The id of the `training` run a drift alarm on `night` (a partition key) starts."""
    return f"{RETRAIN_RUN_PREFIX}{night}"


# How a variable's text becomes each schedule field (what pydantic does for `Settings`).
_SCHEDULE_PARSERS: dict[str, Callable[[str], object]] = {
    "start_date": date.fromisoformat,
    "landing_poke_interval_seconds": int,
    "landing_timeout_seconds": int,
}


def schedule_settings(environ: Mapping[str, str] = os.environ) -> ScheduleSettings:
    """The schedule settings from ``MLOPS_SCHEDULE__<FIELD>`` variables (as `Settings` reads)."""
    names = {
        f"{SCHEDULE_ENV_PREFIX}{item.name.upper()}": item.name for item in fields(ScheduleSettings)
    }
    # Like pydantic-settings, variable names are case-insensitive.
    given = {key.upper(): value for key, value in environ.items()}
    unknown = sorted(key for key in given if key.startswith(SCHEDULE_ENV_PREFIX))
    unknown = [key for key in unknown if key not in names]
    if unknown:
        raise ValueError(f"unknown schedule settings: {unknown}; known: {sorted(names)}")
    values: dict[str, Any] = {}
    for variable, name in names.items():
        if given.get(variable):  # like pydantic-settings here, empty means unset
            try:
                values[name] = _SCHEDULE_PARSERS[name](given[variable])
            except ValueError as error:
                raise ValueError(f"{variable}: {error}") from None
    return ScheduleSettings(**values)


# A `training` request ------------------------------------------------------------------------
#
# What a run of `training` may be asked for (the DAG's form, the REST API's `conf`, the
# CLI's options): one definition, read twice. The DAG's Params take `TRAINING_PARAM_SCHEMAS`
# (JSON schema: Airflow checks a triggered run's conf against them and refuses the trigger);
# `validate_training_request` checks the same bounds in Python and what JSON schema cannot
# say: keys that are no Param (Airflow accepts them), and a window that ends before it starts.

# Largest value of a regularising hyperparameter (min_child_weight, reg_lambda, reg_alpha,
# gamma): far beyond any useful setting, and small enough that XGBoost still learns.
MAX_REGULARIZATION = 1e4
# Largest log-loss ceiling a gate override may set: a model that always answers 0.5 scores
# ln 2 = 0.69, and scikit-learn's log loss of a confidently wrong model is about 36.
MAX_LOG_LOSS = 10.0
MIN_REASON_CHARS = 3
# A reason has a character that is not white space (JSON schema's "pattern" searches).
REASON_PATTERN = r"\S"
DEFAULT_TRAINING_REASON = "manual or scheduled retraining"

# JSON schema compares NaN false with every bound, so "minimum"/"maximum" let it through.
# No number is at least 1 and at most 0 but NaN: "not" this schema refuses NaN alone.
_NOT_NAN = {
    "not": {"$comment": "NaN is no finite number", "type": "number", "minimum": 1, "maximum": 0}
}


@dataclass(frozen=True)
class Bound:
    """A number a request may give: integer or not, finite, in [minimum, maximum] (the
    minimum excluded when `exclusive_minimum`)."""

    integer: bool
    minimum: int | float
    maximum: int | float
    exclusive_minimum: bool = False

    def schema(self) -> dict[str, Any]:
        """The JSON schema of these values (as Airflow's Params check them)."""
        low = "exclusiveMinimum" if self.exclusive_minimum else "minimum"
        if self.integer:  # JSON schema's integer is never NaN nor infinite
            return {"type": "integer", low: self.minimum, "maximum": self.maximum}
        return {"type": "number", low: self.minimum, "maximum": self.maximum, **_NOT_NAN}

    def text(self) -> str:
        """The bound in words, e.g. "a number in (0, 1]"."""
        if self.integer:
            return f"an integer from {self.minimum:g} to {self.maximum:g}"
        opening = "(" if self.exclusive_minimum else "["
        return f"a number in {opening}{self.minimum:g}, {self.maximum:g}]"

    def check(self, value: object, field: str) -> int | float:
        """`value` as an int or float within the bound; else an error naming `field`."""
        kind = "an integer" if self.integer else "a number"
        # JSON's true/false are no numbers (though Python's bool is an int).
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _refused(field, f"must be {kind}, got {errors.shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _refused(field, f"must be a finite number, got {value}")
        if self.integer and isinstance(value, float) and not value.is_integer():
            raise _refused(field, f"must be {kind}, got {value}")
        below = value <= self.minimum if self.exclusive_minimum else value < self.minimum
        if below or value > self.maximum:
            raise _refused(field, f"must be {self.text()}, got {_number(value)}")
        return int(value) if self.integer else float(value)


def _number(value: int | float) -> str:
    # An integer too long to print (Python refuses past 4,300 digits) is described instead.
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * math.log10(2))} digits"
    return errors.shown(value)


_FRACTION = Bound(integer=False, minimum=0, maximum=1, exclusive_minimum=True)
_REGULARIZATION = Bound(integer=False, minimum=0, maximum=MAX_REGULARIZATION)
# The XGBoost hyperparameters a run may override (defaults: the project's model.hyperparameters).
HYPERPARAMETER_BOUNDS: dict[str, Bound] = {
    "n_estimators": Bound(integer=True, minimum=1, maximum=5000),
    "max_depth": Bound(integer=True, minimum=1, maximum=16),
    "learning_rate": _FRACTION,
    "subsample": _FRACTION,
    "colsample_bytree": _FRACTION,
    "min_child_weight": _REGULARIZATION,
    "reg_lambda": _REGULARIZATION,
    "reg_alpha": _REGULARIZATION,
    "gamma": _REGULARIZATION,
    "early_stopping_rounds": Bound(integer=True, minimum=1, maximum=1000),
}

# Every metric training measures on the holdout (`training.model_metrics`): what the gate
# may judge (the project's `model.gate`) and a run override, with the range a threshold on it
# takes (all but log loss are bounded by 1 anyway).
GATE_METRIC_RANGES: dict[str, tuple[float, float]] = {
    "roc_auc": (0.0, 1.0),
    "pr_auc": (0.0, 1.0),
    "log_loss": (0.0, MAX_LOG_LOSS),
    "brier": (0.0, 1.0),
    "calibration_error": (0.0, 1.0),
}


def gate_rule_bounds(metric: str) -> dict[str, Bound]:
    """The fields of a gate rule on `metric` a run may override, and their bounds: the
    threshold is a value of the metric, a change at most its whole range."""
    low, high = GATE_METRIC_RANGES[metric]
    return {
        "threshold": Bound(integer=False, minimum=low, maximum=high),
        "min_absolute_change": Bound(integer=False, minimum=0, maximum=high - low),
        "min_relative_change": Bound(integer=False, minimum=0, maximum=1),
    }


_DAY_SCHEMA = {"type": ["null", "string"], "format": "date", "pattern": DAY_PATTERN}
# The training DAG's Params: name -> JSON schema (keywords of `airflow.sdk.Param`).
TRAINING_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "training_start": _DAY_SCHEMA,
    "training_end": _DAY_SCHEMA,
    "hyperparameters": {
        "type": "object",
        "properties": {name: bound.schema() for name, bound in HYPERPARAMETER_BOUNDS.items()},
        "additionalProperties": False,
    },
    "gate_overrides": {
        "type": "object",
        "properties": {
            metric: {
                "type": "object",
                "properties": {
                    name: bound.schema() for name, bound in gate_rule_bounds(metric).items()
                },
                "additionalProperties": False,
            }
            for metric in GATE_METRIC_RANGES
        },
        "additionalProperties": False,
    },
    "reason": {
        "type": "string",
        "minLength": MIN_REASON_CHARS,
        "maxLength": MAX_REASON_CHARS,
        "pattern": REASON_PATTERN,
    },
}
TRAINING_PARAM_DEFAULTS: dict[str, Any] = {
    "training_start": None,
    "training_end": None,
    "hyperparameters": {},
    "gate_overrides": {},
    "reason": DEFAULT_TRAINING_REASON,
}


def hyperparameters_text() -> str:
    """Each hyperparameter's bound, for the DAG's form and the CLI's help."""
    return "; ".join(f"{name}: {bound.text()}" for name, bound in HYPERPARAMETER_BOUNDS.items())


@dataclass(frozen=True)
class TrainingRequest:
    """A checked request for a `training` run (JSON-friendly through `to_conf`)."""

    training_start: str | None
    training_end: str | None
    hyperparameters: dict[str, int | float]
    gate_overrides: dict[str, dict[str, float]]
    reason: str

    def to_conf(self) -> dict[str, Any]:
        """The request as a run's conf (what an XCom carries)."""
        return {item.name: getattr(self, item.name) for item in fields(self)}


def _refused(field: str, problem: str) -> errors.ConfigurationError:
    return errors.ConfigurationError(f"{field}: {problem}" if field else problem)


def _within(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


def _object(value: object, field: str, what: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise _refused(field, f"must be a JSON object of {what}, got {errors.shown(value)}")
    return value


def check_day(value: object, field: str) -> str | None:
    """A day of the training window: None, or exactly YYYY-MM-DD naming a calendar day."""
    if value is None:
        return None
    if strict_day(value) is None:
        raise _refused(field, f"{errors.shown(value)} is not a date: use YYYY-MM-DD")
    return str(value)


def check_hyperparameters(values: object, field: str = "hyperparameters") -> dict[str, Any]:
    """Hyperparameter overrides: known names, each within its bound (ints stay ints)."""
    checked = {}
    for name, value in _object(values, field, "hyperparameters").items():
        if name not in HYPERPARAMETER_BOUNDS:
            raise _refused(
                field,
                f"unknown hyperparameter {errors.shown(name)}; "
                f"allowed: {', '.join(HYPERPARAMETER_BOUNDS)}",
            )
        checked[name] = HYPERPARAMETER_BOUNDS[name].check(value, _within(field, name))
    return checked


def check_gate_overrides(
    values: object, gated_metrics: Collection[str] | None = None, field: str = "gate_overrides"
) -> dict[str, dict[str, float]]:
    """Gate overrides: metric -> {threshold, min_absolute_change, min_relative_change}, each
    within its bound; with `gated_metrics`, only metrics the gate judges."""
    checked: dict[str, dict[str, float]] = {}
    for metric, changes in _object(values, field, "metric: {field: value}").items():
        if metric not in GATE_METRIC_RANGES:
            raise _refused(
                field,
                f"unknown metric {errors.shown(metric)}; allowed: {', '.join(GATE_METRIC_RANGES)}",
            )
        where = _within(field, metric)
        if gated_metrics is not None and metric not in gated_metrics:
            raise _refused(
                where,
                f"the gate does not judge {metric}; it judges {', '.join(gated_metrics)} "
                "(the project's model.gate)",
            )
        bounds = gate_rule_bounds(metric)
        checked[metric] = {}
        for name, value in _object(changes, where, "field: value").items():
            if name not in bounds:
                raise _refused(
                    where, f"unknown field {errors.shown(name)}; allowed: {', '.join(bounds)}"
                )
            checked[metric][name] = bounds[name].check(value, _within(where, name))
    return checked


def check_reason(value: object, field: str = "reason") -> str:
    """Why a model is trained: text of 3 to 500 characters, not only white space."""
    if not isinstance(value, str):
        raise _refused(field, f"must be text, got {errors.shown(value)}")
    if not MIN_REASON_CHARS <= len(value) <= MAX_REASON_CHARS or not re.search(
        REASON_PATTERN, value
    ):
        raise _refused(
            field,
            f"must be {MIN_REASON_CHARS} to {MAX_REASON_CHARS} characters, not only white space "
            f"(got {len(value)})",
        )
    return value


def validate_training_request(
    conf: Mapping[str, Any] | None, gated_metrics: Collection[str] | None = None
) -> TrainingRequest:
    """A `training` run's conf (or the CLI's options) checked before any work: the Params'
    schemas, finite numbers only, no unknown keys, the window's start on or before its
    end. Absent keys take the Params' defaults. Raises a `ConfigurationError` (permanent)
    naming the field."""
    given = _object({} if conf is None else conf, "", "training parameters")
    unknown = [key for key in given if key not in TRAINING_PARAM_DEFAULTS]
    if unknown:
        raise _refused(
            "",
            f"unknown training parameter {errors.shown(unknown[0])}; "
            f"allowed: {', '.join(TRAINING_PARAM_DEFAULTS)}",
        )
    values = {**TRAINING_PARAM_DEFAULTS, **given}
    start = check_day(values["training_start"], "training_start")
    end = check_day(values["training_end"], "training_end")
    if start is not None and end is not None and start > end:
        raise _refused("training_start", f"{start} is after training_end {end}")
    return TrainingRequest(
        training_start=start,
        training_end=end,
        hyperparameters=check_hyperparameters(values["hyperparameters"]),
        gate_overrides=check_gate_overrides(values["gate_overrides"], gated_metrics),
        reason=check_reason(values["reason"]),
    )


# Task payloads --------------------------------------------------------------------------------

# What one task hands the next through XCom: frozen dataclasses of JSON values. Jobs take and
# return them as XCom values (`to_xcom`, `from_xcom`: the one place they are serialized), so a
# DAG file passes them on whole and reads them only through these classes.


# A payload as it crosses XCom: what a job takes from an upstream task.
XCom = Mapping[str, Any]


class Payload:
    """A task payload: crosses XCom as a dict of JSON values."""

    def to_xcom(self) -> dict[str, Any]:
        """The payload as an XCom value."""
        return asdict(cast(Any, self))

    @classmethod
    def from_xcom(cls, value: XCom) -> Self:
        """The payload an XCom value carries."""
        return cls(**value)


@dataclass(frozen=True)
class ValidationOutcome(Payload):
    """What the validation gate decided for one night's partition."""

    day: str
    rows: int
    staged_path: str
    extra_columns: list[str]
    data_docs: str


@dataclass(frozen=True)
class BuiltFeatures(Payload):
    """One night's feature partition built from events (`skipped` for a snapshot source,
    which is its own feature table)."""

    day: str
    path: str
    entities: int
    nights_replayed: int
    state_rows: int
    skipped: bool = False


@dataclass(frozen=True)
class DerivedLabels(Payload):
    """Labels derived from later events on one night (`skipped` when the project's labels
    land, or the prediction day has no features)."""

    night: str
    prediction_day: str
    path: str
    rows: int
    positives: int
    skipped: bool = False


@dataclass(frozen=True)
class MaterializationResult(Payload):
    """What one materialization wrote into the online store."""

    feature_view: str
    start: str
    end: str
    partitions: list[str]
    rows_read: int
    entities_written: int

    def features_event(self, night: str) -> dict[str, Any]:
        """The `features` asset event's extra for the night."""
        return {"date": night, "rows": self.entities_written}


# A range of entity ids one scoring task scores: {"index", "first", and "last" or "before"},
# the ids from `first` up to `last` included, or up to `before` excluded. Integer ids are cut
# between two ids (last + 1 starts the next shard); text has no next id, so a text shard ends
# before the id its successor starts with. JSON values: ids cross XCom as numbers or text.
Shard = dict[str, Any]
EntityKey = int | str


def shard_range(shard: Mapping[str, Any]) -> tuple[EntityKey, EntityKey, bool]:
    """A shard's ids as (first, bound, whether the bound is one of them)."""
    if "before" in shard:
        return shard["first"], shard["before"], False
    return shard["first"], shard["last"], True


@dataclass(frozen=True)
class ScoringPlan(Payload):
    """What one night's scoring uses, fixed once at the start: every shard scores with it."""

    day: str
    as_of: str
    model_name: str
    model_version: str
    model_run_id: str
    model_uri: str
    scoring_run_id: str
    feature_ttl_seconds: float
    partitions: list[str]
    shards: list[Shard]


@dataclass(frozen=True)
class ScoredShard(Payload):
    """One scored shard, staged."""

    index: int
    rows: int
    path: str


@dataclass(frozen=True)
class PublishedPredictions(Payload):
    """A night's published predictions partition."""

    path: str
    date: str
    model_version: str
    rows: int

    def predictions_event(self) -> dict[str, Any]:
        """The `predictions` asset event's extra."""
        return {"date": self.date, "model_version": self.model_version, "rows": self.rows}


@dataclass(frozen=True)
class TrainingSet(Payload):
    """A saved point-in-time training set and the checked request it was built for."""

    path: str
    rows: int
    label_share: float
    start: str
    end: str
    request: TrainingRequest

    @classmethod
    def from_xcom(cls, value: XCom) -> Self:
        return cls(**{**value, "request": TrainingRequest(**value["request"])})


@dataclass(frozen=True)
class TrainedModel(Payload):
    """A registered candidate."""

    run_id: str
    model_name: str
    version: str
    model_uri: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class GateDecision(Payload):
    """The evaluation gate's verdict and every number behind it."""

    passed: bool
    reasons: list[str]
    candidate_version: str
    champion_version: str | None
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class InfraCheck(Payload):
    """Whether a registered model loads and scores in a fresh process."""

    passed: bool
    rows: int
    model_megabytes: float
    detail: str


def promotion_event(candidate: TrainedModel, gate: GateDecision) -> dict[str, Any]:
    """The `model_promoted` asset event's extra."""
    return {"version": candidate.version, "previous": gate.champion_version}


@dataclass(frozen=True)
class AliasMove(Payload):
    """One entry of the registry's audit trail."""

    when: str
    action: str
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    actor: str
    source: str
    state: str = "done"


@dataclass(frozen=True)
class RollbackTarget(Payload):
    """A rollback decided once: `version` becomes champion in place of `replaces`."""

    version: str
    replaces: str | None


# "ok" | "warning" | "alert" | "too_few_rows" | "no_labels" | "expected" (a monotone
# feature's drift)
Level = str


@dataclass(frozen=True)
class FeatureDrift(Payload):
    """Drift of one feature against the reference profile."""

    feature: str
    kind: str
    score: float  # numeric: PSI; categorical: Jensen-Shannon distance
    distance: float  # numeric: binned KS statistic; categorical: Jensen-Shannon distance
    wasserstein: float | None  # numeric: W1 in reference standard deviations; else None
    unseen_share: float
    level: Level


@dataclass(frozen=True)
class RealizedPerformance(Payload):
    """How one model version's earlier predictions did, by the labels that landed tonight:
    metrics on them beside those of the version's own holdout, and the drop in ROC AUC."""

    model_version: str
    nights: list[str]  # the nights those predictions were made for
    rows: int  # labelled predictions
    metrics: dict[str, float]  # empty below the row floor or with one class only
    holdout_metrics: dict[str, float]  # as the version's training run logged them
    roc_auc_drop: float | None
    level: Level


@dataclass(frozen=True)
class DriftReport(Payload):
    """One night's drift check; where its report page and MLflow run are, once written.

    `performance` holds one entry per model version whose predictions got labels tonight;
    `performance_level` is that of `model_version` (the one that scored tonight), the only
    one the alarm judges.
    """

    day: str
    model_version: str
    rows: int
    features: list[FeatureDrift]
    prediction_psi: float
    prediction_level: Level
    performance: list[RealizedPerformance]
    performance_level: Level
    alarm: bool
    reasons: list[str]
    report_html: str = ""
    mlflow_run_id: str = ""

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.level == "alert"]

    @classmethod
    def from_xcom(cls, value: XCom) -> Self:
        features = [FeatureDrift.from_xcom(item) for item in value["features"]]
        performance = [RealizedPerformance.from_xcom(item) for item in value["performance"]]
        return cls(**{**value, "features": features, "performance": performance})


@dataclass(frozen=True)
class RetrainRequest(Payload):
    """A drift alarm's request for retraining: the `retrain_request` event's extra."""

    reason: str
    date: str
    drifted_features: dict[str, dict[str, float | None]]
    prediction_psi: float
    model_version: str

    def training_conf(self) -> dict[str, Any]:
        """The conf of the `training` run it starts."""
        return {"reason": self.reason}
