"""Errors the pipeline raises, split by whether retrying can help.

Airflow's retry policy in each DAG keys on these classes: a `DataQualityError`
fails the task at once (bad bytes do not fix themselves), a `NotLandedError`
is retried with backoff (the partition may still arrive).
"""


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class DataQualityError(PipelineError):
    """The data is wrong; retrying the same bytes cannot succeed."""


class ValidationFailedError(DataQualityError):
    """A partition failed its expectation suite and was quarantined."""


class UnreadablePartitionError(DataQualityError):
    """A partition's file is corrupt or truncated and was quarantined."""


class NotLandedError(PipelineError):
    """The raw partition for the requested date has not landed (yet)."""


class ConfigurationError(PipelineError):
    """Settings or repository objects are inconsistent."""


class PromotionError(PipelineError):
    """An alias could not be moved safely (e.g. the champion changed underneath)."""


class NoChampionError(PipelineError):
    """Scoring was asked for, but no model holds the alias it scores with."""


class NoFeaturesError(DataQualityError):
    """No validated features exist in the window a night would be scored from."""
