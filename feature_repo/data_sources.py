"""Data sources: Feast reads only the validated zone of the lake."""

from feast import FileSource
from feast.data_format import ParquetFormat

from pipelines.settings import Settings


def validated_source(settings: Settings) -> FileSource:
    """The project's validated partitions (hive layout, one file per day)."""
    source = settings.project.source
    return FileSource(
        name=f"{source.dataset}_validated",
        path=str(settings.validated_root / source.dataset),
        file_format=ParquetFormat(),
        timestamp_field=source.timestamp,
        description=f"{source.dataset} partitions that passed the validation gate.",
    )
