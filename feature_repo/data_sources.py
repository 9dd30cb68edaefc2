"""Data sources: Feast reads only the validated zone of the lake."""

from feast import FileSource
from feast.data_format import ParquetFormat

from pipelines.settings import Settings


def validated_source(settings: Settings) -> FileSource:
    """The project's validated partitions (hive layout, one file per day)."""
    project = settings.project
    return FileSource(
        name=f"{project.feature_dataset}_validated",
        path=str(settings.validated_root / project.feature_dataset),
        file_format=ParquetFormat(),
        timestamp_field=project.source.timestamp,
        description=f"Daily {project.feature_dataset} rows built from validated partitions.",
    )
