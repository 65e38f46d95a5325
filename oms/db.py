"""Connections to the state database: one engine per URL, schema created on first use."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .exceptions import ConfigurationError
from .models import Base
from .settings import get_settings

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}


def safe_url(url: str) -> str:
    """The URL with its password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's implicit BEGIN is turned off so that ``_sqlite_begin`` can take the
    # write lock up front: two processes then queue on busy_timeout instead of
    # failing to upgrade a read lock (SQLITE_BUSY deadlock).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _build(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        if parsed.drivername == "postgresql":
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        # No pre-ping: it costs a round trip per transaction. A connection found dead
        # raises a disconnect error, which invalidates the pool; workers retry
        # (``retrying``), so a database restart costs them one retry.
        engine = create_engine(url, pool_size=5, max_overflow=10)
    try:
        Base.metadata.create_all(engine)
    except OperationalError as exc:
        engine.dispose()
        raise ConfigurationError(
            f"cannot reach the database at {safe_url(url)}: {exc.orig}"
        ) from None
    return engine


def sessions(url: str | None = None) -> sessionmaker[Session]:
    """The session factory for ``url`` (default: ``OMS_DATABASE_URL``), creating tables once."""
    url = url or get_settings().database_url
    with _lock:
        if url not in _engines:
            engine = _build(url)
            _engines[url] = (engine, sessionmaker(engine, expire_on_commit=False))
        return _engines[url][1]


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with sessions(url).begin() as session:
        yield session


def dispose_all() -> None:
    """Close every pooled connection (after fork, and in tests)."""
    with _lock:
        for engine, _ in _engines.values():
            engine.dispose()
        _engines.clear()


T = TypeVar("T")

#: Errors that mean "the database is unreachable or busy right now", worth retrying.
TRANSIENT = (OperationalError, InterfaceError)


def retrying(work: Callable[[], T], what: str) -> T:
    """Run ``work`` (one whole transaction), retrying with backoff while the database is unreachable.

    Gives up after ``OMS_DB_RETRY_SECONDS``. A transaction whose commit was cut
    off may have been stored: the transitions refuse to apply twice (the retry
    raises ``TaskAlreadyFinished``), so retrying is safe.
    """
    deadline = time.monotonic() + get_settings().db_retry_seconds
    delay = 0.1
    while True:
        try:
            return work()
        except TRANSIENT as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("database unavailable while %s (%s); retrying in %.1fs", what, exc.orig, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
