"""Errors the pipeline raises, split by whether retrying can help.

Every DAG's retry policy fails a task at once on a `PermanentError` (the same
inputs give the same error, so a retry only delays the alert); anything else, such
as a `NotLandedError` or a lost connection, is retried with backoff.
"""


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class PermanentError(PipelineError):
    """Retrying the same inputs cannot succeed: a person must change data, settings or state."""


class DataQualityError(PermanentError):
    """The data is wrong; retrying the same bytes cannot succeed."""


class ValidationFailedError(DataQualityError):
    """A partition failed its expectation suite and was quarantined."""


class UnreadablePartitionError(DataQualityError):
    """A partition's file is corrupt or truncated and was quarantined."""


class ContractViolationError(DataQualityError):
    """A partition's files do not have the contract's columns and types, and no lossless
    cast gives them."""


class NoFeaturesError(DataQualityError):
    """No validated features exist in the window a night would be scored from."""


class NotLandedError(PipelineError):
    """The raw partition for the requested date has not landed (yet)."""


class ConfigurationError(PermanentError):
    """Settings or repository objects are inconsistent."""


class MissingPartitionKeyError(ConfigurationError):
    """A nightly run was triggered without a valid partition key naming its night."""


class PromotionError(PermanentError):
    """An alias could not be moved safely (e.g. the champion changed underneath)."""


class ModelCardError(PermanentError):
    """A model card was asked for that cannot be given: the version is not registered, or
    was registered before model cards were written."""


class NoChampionError(PermanentError):
    """Scoring was asked for, but no model holds the alias it scores with."""


class RerunError(PermanentError):
    """A task was cleared alone, but the inputs it needs are gone: the message says what to
    clear instead."""


class NotReproducedError(PermanentError):
    """A published partition, or rows of it, could not be recomputed bit for bit from its
    lineage: an input it needs is gone, or rows differ (the message says which)."""


class EntityIdError(PermanentError):
    """An entity id given to a command is not of the project's entity type."""


def shown(value: object, limit: int = 80) -> str:
    """A value as a message may echo it: its repr with non-ASCII escaped (a Cyrillic
    look-alike never reads as Latin), cut at `limit` characters with its full length said."""
    return _cut(ascii(value), len(str(value)), limit)


def brief(text: str, limit: int = 200) -> str:
    """A message from elsewhere (a library's error), escaped and cut like `shown`."""
    return _cut(text.encode("ascii", "backslashreplace").decode(), len(text), limit)


def _cut(text: str, length: int, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({length} characters)"
