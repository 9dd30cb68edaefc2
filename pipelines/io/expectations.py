"""The Great Expectations file context of the project."""

from __future__ import annotations

from typing import Any

from pipelines.settings import Settings


def gx_context(settings: Settings) -> Any:
    """The committed GE file context, writing results and Data Docs under the state root."""
    import great_expectations as gx

    return gx.get_context(
        mode="file",
        context_root_dir=str(settings.gx_context_root),
        runtime_environment={"state_root": str(settings.state_root)},
    )
