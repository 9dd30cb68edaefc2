"""Entry points of the `feature_pipeline` DAG's tasks: payloads in and out as XCom values."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pipelines import contracts
from pipelines.contracts import XCom
from pipelines.settings import load_settings


def raw_partition_in_lake(night: str | date | None) -> str:
    """The night's raw data files, as a glob relative to the lake's root."""
    from pipelines.io import lake

    settings = load_settings()
    folder = lake.partition_dir(
        settings.raw_root, settings.project.source.dataset, contracts.as_night(night)
    )
    # Python's glob skips dot-names, so a file still being written aside is not "landed".
    return str(folder.relative_to(settings.lake_root) / "*.parquet")


def landing_alert(night: str | None, error: BaseException | None) -> str | None:
    """What the alert says when a night's partition never landed; None when the landing
    check failed for another reason (then the error itself is the alert)."""
    from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferralTimeout

    from pipelines.ingest import validation
    from pipelines.io import lake

    if not isinstance(error, AirflowSensorTimeout | TaskDeferralTimeout) or not night:
        return None
    settings = load_settings()
    day = contracts.as_night(night)
    path = lake.partition_dir(settings.raw_root, settings.project.source.dataset, day)
    waited = timedelta(seconds=settings.schedule.landing_timeout_seconds)
    message = (
        f"raw partition {settings.project.source.dataset} date={day.isoformat()} has not landed "
        f"within {waited}: expected parquet files in {path}"
    )
    quarantined = validation.quarantine_result(settings, day)
    if quarantined.exists():
        message += f" (an earlier one was quarantined, see {quarantined}: land a corrected one)"
    return message


def validate_partition(night: str | date | None) -> dict[str, Any]:
    """Run the validation gate on a night's raw partition (quarantines it on failure)."""
    from pipelines.ingest import validation

    return validation.validate_partition(load_settings(), contracts.as_night(night)).to_xcom()


def publish_partition(night: str | date | None) -> str:
    """Publish a night's staged partition into the validated zone (again: a no-op)."""
    from pipelines.ingest import publish

    return str(publish.publish_partition(load_settings(), contracts.as_night(night)))


def build_features(night: str | date | None) -> dict[str, Any]:
    """Build the night's feature rows from its events (nothing for a snapshot source)."""
    from pipelines.features import building

    return building.build_features(load_settings(), contracts.as_night(night)).to_xcom()


def build_labels(night: str | date | None) -> dict[str, Any]:
    """Derive the labels the night's events tell (nothing when labels land)."""
    from pipelines.features import labelling

    return labelling.derive_labels(load_settings(), contracts.as_night(night)).to_xcom()


def materialize(night: str | date | None) -> dict[str, Any]:
    """Apply the Feast repo, then materialize the night's window into the online store."""
    from pipelines.features import materialization
    from pipelines.ingest import validation
    from pipelines.io import feast_store

    settings = load_settings()
    validation.refuse_future_night(settings, contracts.as_night(night))
    store = feast_store.apply_repo(settings)
    start, end = materialization.materialization_window(
        settings, *contracts.night_interval(contracts.as_night(night))
    )
    return materialization.materialize_window(settings, start, end, store).to_xcom()


def features_event(night: str | None, materialized: XCom) -> dict[str, Any]:
    """The `features` asset event's extra for a materialized night."""
    result = contracts.MaterializationResult.from_xcom(materialized)
    return result.features_event(contracts.as_night(night).isoformat())
