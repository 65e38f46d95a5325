"""A throw-away PostgreSQL database for one benchmark run."""

from __future__ import annotations

import uuid

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _admin_execute(admin_url: str, statement: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


def create_database(admin_url: str = POSTGRES_ADMIN, prefix: str = "oms_bench") -> str:
    """Create a database beside ``admin_url``'s, its schema at the newest revision, and return its URL."""
    from sqlalchemy.engine import make_url

    from oms.store.db import connect
    from oms.store.schema import upgrade

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = connect(url)
    try:
        upgrade(engine)  # what `oms db upgrade` does
    finally:
        engine.dispose()
    return url


def drop_database(url: str, admin_url: str = POSTGRES_ADMIN) -> None:
    """Drop the database of ``url``, closing whatever connections it still has."""
    from sqlalchemy.engine import make_url

    _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
