"""A `training` request checked before any work, by the DAG's first task and by the CLI.

The rules are `pipelines.contracts`' (the same the DAG's Params give Airflow); this
module adds what only the settings know, the metrics the gate judges, and the CLI's
argument types, so that a bad option is refused while its arguments are parsed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any

from pipelines import contracts
from pipelines.errors import ConfigurationError
from pipelines.settings import Settings, load_settings


def gated_metrics(settings: Settings) -> tuple[str, ...]:
    """The metrics the evaluation gate judges (the only ones a run may override)."""
    return tuple(rule.metric for rule in settings.project.model.gate)


def check(
    conf: Mapping[str, Any] | None, settings: Settings | None = None
) -> contracts.TrainingRequest:
    """A run's conf (or the CLI's options as one) checked: `ConfigurationError` naming the
    field, before anything is read or trained."""
    return contracts.validate_training_request(conf, gated_metrics(settings or load_settings()))


def _argument(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: a refusal becomes argparse's one-line usage error (exit code 2)."""

    def argument(text: str) -> Any:
        try:
            return parse(text)
        except ConfigurationError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    argument.__name__ = parse.__name__
    return argument


def _json_object(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:  # also a number too long to convert
        raise ConfigurationError(f"not JSON: {error}") from None


@_argument
def day(text: str) -> str:
    """`--start`/`--end`: exactly YYYY-MM-DD."""
    contracts.check_day(text, "")
    return text


@_argument
def hyperparameters(text: str) -> dict[str, Any]:
    """`--hyperparameters`: a JSON object of known hyperparameters within their bounds."""
    return contracts.check_hyperparameters(_json_object(text), "")


@_argument
def gate_overrides(text: str) -> dict[str, dict[str, float]]:
    """`--gate-overrides`: a JSON object of metric -> {field: value} within their bounds."""
    return contracts.check_gate_overrides(_json_object(text), field="")
