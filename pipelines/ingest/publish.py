"""Publishing a staged, validated partition into the validated zone."""

from __future__ import annotations

import logging
import os
from datetime import date
from pathlib import Path

from pipelines import faults
from pipelines.errors import (
    RerunError,
)
from pipelines.ingest.validation import _staging_file
from pipelines.io import lake
from pipelines.settings import Settings

log = logging.getLogger(__name__)


def publish_partition(settings: Settings, day: date) -> Path:
    """Move a staged, validated partition into the validated zone (one atomic rename).

    Run again after it succeeded (its staged file already moved), it finds the night
    published and does nothing.
    """
    staged = _staging_file(settings, day)
    target = lake.partition_file(settings.validated_root, settings.project.source.dataset, day)
    if not staged.exists():
        if target.exists():
            log.info("%s is already published: nothing to do", target)
            return target
        raise RerunError(
            f"nothing is staged for {day.isoformat()} and nothing is published: clear "
            "`validate` with its downstream tasks (or trigger the night again), not `publish` alone"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    faults.crash_here(settings, "ingest.publishing")
    os.replace(staged, target)
    return target
