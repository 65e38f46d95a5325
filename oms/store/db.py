"""Connections to the state database: one :class:`Database` per URL, its schema checked on first use.

A :class:`Database` holds the SQLAlchemy engine (its pool serves the ORM and Core),
on PostgreSQL a second pool of autocommit connections for the hot path's
single-statement transitions, the session factory and the store of hot-path
statements for its dialect. Pools are dropped in a forked child, so a parent's
connections are never shared with its children.
"""

from __future__ import annotations

import logging
import os
import random
import select
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cached_property
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import Pool

from ..exceptions import ConfigurationError
from ..model.definitions import Definition
from ..model.worktime import Schedule
from ..settings import get_settings
from .contract import Store
from .portable import PortableStore
from .postgres import PostgresStore
from .schema import ensure

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_databases: dict[str, Database] = {}


def safe_url(url: str) -> str:
    """The URL with its password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


#: How long a SQLite connection waits for another's write lock before it gives up.
SQLITE_BUSY_SECONDS = 30


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's implicit BEGIN is turned off so that ``_sqlite_begin`` can take the
    # write lock up front: two processes then queue on busy_timeout instead of
    # failing to upgrade a read lock (SQLITE_BUSY deadlock).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    _enter_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _enter_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database to WAL, waiting out the other connections switching a fresh one at the same moment.

    The switch reads the file's header, then upgrades to a write: while another connection holds the write
    lock SQLite refuses that upgrade at once ("database is locked"), without waiting (two upgrading readers
    would deadlock). Once any connection has switched, the others find WAL already on.
    """
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    delay = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay * random.uniform(1, 2))  # jittered: racers do not retry in step
            delay = min(delay * 2, 0.1)


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


#: The drivers the engine runs on (``postgres://``, as Heroku and others write it, is PostgreSQL's).
SUPPORTED = {"sqlite": "sqlite", "sqlite+pysqlite": "sqlite", "postgresql": "postgresql+psycopg",
             "postgres": "postgresql+psycopg", "postgresql+psycopg": "postgresql+psycopg"}


def connect(url: str) -> Engine:
    """An engine for ``url`` with the engine's connection settings; the schema is not checked (``oms db``).

    Raises ``ConfigurationError`` for a database or driver the engine does not run on."""
    try:
        parsed = make_url(url)
    except ArgumentError:  # not echoed: it may hold a password
        raise ConfigurationError("OMS_DATABASE_URL is not a database URL: write sqlite:///oms.db or "
                                 "postgresql://user@host/db") from None
    if parsed.drivername not in SUPPORTED:
        raise ConfigurationError(f"OMS_DATABASE_URL {safe_url(url)}: {parsed.drivername!r} is not supported; the "
                                 "engine runs on SQLite (sqlite:///oms.db) or PostgreSQL (postgresql://user@host/db, "
                                 "with psycopg 3)")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        if parsed.drivername != SUPPORTED[parsed.drivername]:
            url = parsed.set(drivername=SUPPORTED[parsed.drivername]).render_as_string(hide_password=False)
        # No pre-ping: it costs a round trip per transaction. A connection the server closed is dropped as it
        # leaves the pool (``_drop_closed``); one that dies in use raises a disconnect error, which invalidates the
        # pool, and workers retry (``retrying``).
        engine = create_engine(url, pool_size=5, max_overflow=10)
    return engine


@event.listens_for(Pool, "checkout")
def _drop_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Check each PostgreSQL connection as it leaves a pool, for free: an idle connection's socket has nothing to
    read unless the server ended it (a restart, ``pg_terminate_backend``, an idle timeout: it sends the error and
    closes). Such a connection is dropped and another made, so the first request after a database restart does
    not fail on a connection the pool kept from before it. Registered once for every pool: registered per
    engine, it changed when dropped engines were collected (a test leaked a socket at teardown). SQLite's
    connections are files, left alone."""
    if not isinstance(dbapi_connection, psycopg.Connection):
        return
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    if poller.poll(0):
        raise DisconnectionError("the server closed this pooled connection")  # the pool connects again


def unreachable(url: str, error: OperationalError) -> ConfigurationError:
    """The error that says the database at ``url`` cannot be reached, its password hidden."""
    return ConfigurationError(f"cannot reach the database at {safe_url(url)}: {error.orig}")


def _build(url: str) -> Engine:
    """The engine of a :class:`Database`: connected once, its schema at the newest revision (or refused)."""
    engine = connect(url)
    try:
        ensure(engine, safe_url(url))
    except OperationalError as exc:
        engine.dispose()
        raise unreachable(url, exc) from None
    except BaseException:
        engine.dispose()
        raise
    return engine


class Database:
    """One state database: its engine, sessions, hot-path store and the definitions read from it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _build(url)
        self.dialect = self.engine.dialect.name
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info={"database": self})
        #: Parsed definitions by ``(workflow_id, version)``: versions never change.
        self.definitions: dict[tuple[str, int], Definition] = {}
        #: The newest version of each workflow this process has started (checked by every start).
        self.latest: dict[str, int] = {}
        #: The engine's own definitions this process saved: ``(workflow id, digest) -> version``.
        self.saved: dict[tuple[str, str], int] = {}
        #: Calendars' schedules by id, each with the moment it must be read again (another process may change it).
        self.schedules: dict[str, tuple[float, Schedule]] = {}

    @cached_property
    def store(self) -> Store:
        """The transitions of the hot path, in this dialect's statements."""
        return PostgresStore(self) if self.dialect == "postgresql" else PortableStore(self)

    @cached_property
    def autocommit(self) -> Engine:
        """A pool of autocommit connections: a statement is its own transaction, one round trip.

        Nothing is reset when a connection returns to it: no transaction is ever left open.
        """
        return create_engine(self.engine.url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None,
                             pool_size=5, max_overflow=10)

    @property
    def reader(self) -> Engine:
        """Where a read outside any transaction runs: on PostgreSQL the autocommit pool (a statement is one round
        trip, and no ROLLBACK follows it: psycopg forgets every statement a connection prepared at each ROLLBACK,
        so one read closed that way in the main pool kept all of the pool's statements from ever being prepared);
        on SQLite the engine."""
        return self.autocommit if self.dialect == "postgresql" else self.engine

    @property
    def engines(self) -> list[Engine]:
        """Every pool this database opened."""
        return [self.engine, *([self.__dict__["autocommit"]] if "autocommit" in self.__dict__ else [])]

    def dispose(self, close: bool = True) -> None:
        for engine in self.engines:
            engine.dispose(close=close)

    @contextmanager
    def raw(self, engine: Engine | None = None) -> Iterator[Any]:
        """A pooled driver connection (psycopg or sqlite3) of ``engine``, invalidated if it breaks."""
        fairy = (engine or self.engine).raw_connection()
        connection = fairy.driver_connection
        try:
            yield connection
        except BaseException:
            if getattr(connection, "broken", False) or getattr(connection, "closed", False):
                fairy.invalidate()
            raise
        finally:
            fairy.close()


def database(url: str | None = None) -> Database:
    """The :class:`Database` for ``url`` (default: ``OMS_DATABASE_URL``), connected once per process."""
    url = url or get_settings().database_url
    found = _databases.get(url)
    if found is None:
        with _lock:
            found = _databases.get(url)
            if found is None:
                found = _databases[url] = Database(url)
    return found


def sessions(url: str | None = None) -> sessionmaker[Session]:
    """The session factory for ``url`` (default: ``OMS_DATABASE_URL``)."""
    return database(url).sessions


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with sessions(url).begin() as session:
        yield session


def dispose_all() -> None:
    """Close every pooled connection and forget every database (tests, ``oms.configure``)."""
    with _lock:
        for found in _databases.values():
            found.dispose()
        _databases.clear()


def _after_fork_in_child() -> None:
    """A forked child must not use its parent's sockets: drop the pools without closing them.

    The lock is made anew: a thread of the parent's may have held it (opening a
    database) and that thread does not exist in the child.
    """
    global _lock
    _lock = threading.Lock()
    for found in list(_databases.values()):
        found.dispose(close=False)
    _databases.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)

T = TypeVar("T")

#: Errors that mean "the database is unreachable or busy right now", worth retrying.
TRANSIENT: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
)


#: How long :func:`retrying` waits out an unreachable database in this context (``None``:
#: ``OMS_DB_RETRY_SECONDS``); the HTTP API sets it per request to answer 503 sooner.
retry_seconds: ContextVar[float | None] = ContextVar("oms_db_retry_seconds", default=None)


def retrying(work: Callable[[], T], what: str) -> T:
    """Run ``work`` (one whole transaction), retrying with backoff while the database is unreachable.

    Gives up after ``OMS_DB_RETRY_SECONDS`` (or :data:`retry_seconds`). A transaction whose commit was cut
    off may have been stored: the transitions refuse to apply twice (the retry
    raises ``TaskAlreadyFinished``), so retrying is safe.
    """
    budget = retry_seconds.get()
    deadline = time.monotonic() + (get_settings().db_retry_seconds if budget is None else budget)
    delay = 0.1
    while True:
        try:
            return work()
        except TRANSIENT as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("database unavailable while %s (%s); retrying in %.1fs", what,
                           getattr(exc, "orig", None) or exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
