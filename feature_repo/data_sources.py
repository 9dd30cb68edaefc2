"""Data sources: Feast reads only the validated zone of the lake."""

from feast import FileSource
from feast.data_format import ParquetFormat

from pipelines.settings import Settings


def activity(settings: Settings) -> FileSource:
    """Validated daily activity partitions (hive layout, one file per day)."""
    names = settings.dataset
    return FileSource(
        name=f"{names.raw_dataset}_validated",
        path=str(settings.validated_root / names.raw_dataset),
        file_format=ParquetFormat(),
        timestamp_field=names.timestamp,
        description="Daily customer activity that passed the validation gate.",
    )
