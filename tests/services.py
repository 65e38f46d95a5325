"""Where the test services are, and a clear failure (never a skip) when one is missing."""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from sqlalchemy import create_engine, text

POSTGRES_ADMIN = os.environ.get("OMS_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("OMS_TEST_REDIS", "redis://127.0.0.1:6379/3")
RABBITMQ_URL = os.environ.get("OMS_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")

HINT = "start the test services with scripts/services (or run scripts/test)"


def create_postgres_database(*, upgrade: bool = True) -> str:
    """Create a fresh database and return its URL; with ``upgrade``, its schema at the newest revision."""
    name = f"oms_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN} ({exc}); {HINT}", pytrace=False)
    url = POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + name
    if upgrade:
        upgrade_schema(url)
    return url


def upgrade_schema(url: str) -> None:
    """What ``oms db upgrade`` does, for a database the tests made."""
    from oms.store.db import connect
    from oms.store.schema import upgrade

    engine = connect(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def flush_redis(url: str = REDIS_URL) -> None:
    """Empty the Redis database at ``url`` (the client closed at once: an open socket left to the collector
    is a ResourceWarning, an error in this suite, in whichever test the collector happens to run)."""
    try:
        with redis.Redis.from_url(url) as client:
            client.flushdb()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {url} ({exc}); {HINT}", pytrace=False)
