"""One registry change at a time: a file lock, or a Postgres advisory lock in production."""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from pipelines.settings import Settings


@contextmanager
def registry_lock(settings: Settings) -> Iterator[None]:
    """Serialize alias moves: across hosts on Postgres when configured, else on this host."""
    lock_url = settings.registry_lock_url
    if lock_url:
        with _advisory_lock(lock_url, f"mlflow-registry:{settings.project.model.name}"):
            yield
        return
    path = settings.mlflow_root / "registry.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def advisory_lock_key(name: str) -> int:
    """A stable signed 64-bit key for `pg_advisory_lock` (Python's `hash` is salted)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def _advisory_lock(url: str, name: str) -> Iterator[None]:
    """Hold a session-level Postgres advisory lock; a crashed holder's session frees it."""
    import psycopg2

    # libpq takes `postgresql://`, not SQLAlchemy's `postgresql+driver://`.
    dsn = "postgresql://" + url.split("://", 1)[1]
    connection = psycopg2.connect(dsn)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (advisory_lock_key(name),))
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (advisory_lock_key(name),))
    finally:
        connection.close()
