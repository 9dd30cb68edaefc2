"""The Feast feature store of the project: its configuration, handle and apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipelines.io import lake
from pipelines.settings import Settings


def repo_config_dict(settings: Settings) -> dict[str, Any]:
    """`feature_store.yaml` contents for the settings' profile."""
    root = settings.feast_root
    if settings.profile == "production":
        registry: dict[str, Any] = {
            "registry_type": "sql",
            "path": settings.feast.registry_sql_url,
            "cache_ttl_seconds": 60,
        }
        online: dict[str, Any] = {
            "type": "redis",
            "connection_string": settings.feast.redis_connection,
        }
    else:
        registry = {
            "registry_type": "file",
            "path": str(root / "registry.db"),
            "cache_ttl_seconds": 60,
        }
        online = {"type": "sqlite", "path": str(root / "online_store.db")}
    return {
        "project": settings.feast_project,
        "provider": "local",
        "registry": registry,
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }


def feature_store(settings: Settings) -> Any:
    """A `FeatureStore` configured from settings (no repository files are read)."""
    from feast import FeatureStore, RepoConfig

    settings.feast_root.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(repo_path=settings.feature_repo, **repo_config_dict(settings))
    return FeatureStore(repo_path=str(settings.feature_repo), config=config)


def write_feature_store_yaml(settings: Settings) -> Path:
    """Render the store's config for the `feast` CLI (`feast -c feature_repo -f <this>`)."""
    target = settings.feast_root / "feature_store.yaml"
    lake.write_bytes_atomic(
        yaml.safe_dump(repo_config_dict(settings), sort_keys=False).encode(), target
    )
    return target


def apply_repo(settings: Settings) -> Any:
    """Register the repository's objects (idempotent) and return the store."""
    from feature_repo.definitions import build

    store = feature_store(settings)
    store.apply(build(settings))
    write_feature_store_yaml(settings)
    return store
