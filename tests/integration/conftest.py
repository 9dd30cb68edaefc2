"""Real Postgres and Redis for the production-profile tests.

Each test gets databases and Redis keys of its own (a random `itest_*` name) and removes
them afterwards. When a service is not reachable the tests are skipped with a loud
reason, unless `CI_REQUIRE_SERVICES=1` (set by `.ci/run`): then they fail, so CI proves
they ran.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import NoReturn
from urllib.parse import urlparse

import pytest

POSTGRES_URL = os.environ.get("ITEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("ITEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(what: str, error: Exception) -> NoReturn:
    message = (
        f"PRODUCTION-PROFILE TEST NOT RUN: {what} is not reachable ({error}). "
        "Start it (see .ci/run) to run the integration tests."
    )
    if os.environ.get("CI_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def unique_name(purpose: str) -> str:
    """A Postgres- and Feast-safe name no other test or run uses."""
    return f"itest_{purpose}_{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def postgres() -> str:
    """Admin URL of the Postgres server (its maintenance database)."""
    import psycopg2

    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg2.OperationalError as error:
        unavailable(f"Postgres at {POSTGRES_URL}", error)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_server() -> str:
    """URL of the Redis server."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        unavailable(f"Redis at {REDIS_URL}", error)
    return REDIS_URL


def database_url(admin_url: str, database: str, driver: str = "") -> str:
    """URL of `database` on the admin URL's server, with a SQLAlchemy driver if given."""
    parsed = urlparse(admin_url)
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return f"{scheme}://{parsed.netloc}/{database}"


@contextlib.contextmanager
def temporary_database(admin_url: str, purpose: str) -> Iterator[str]:
    """Create a fresh database; drop it (and its sessions) afterwards. Yields its name."""
    import psycopg2

    name = unique_name(purpose)
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.close()


def redis_keys_matching(redis_url: str, pattern: bytes) -> list[bytes]:
    import redis

    return list(redis.Redis.from_url(redis_url).scan_iter(pattern))


def delete_redis_keys(redis_url: str, pattern: bytes) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(pattern):
        client.delete(key)
