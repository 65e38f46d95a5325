"""The schema's version: which migration a database is at, the check on first use, upgrades under a lock.

Migrations are Alembic revisions shipped in :mod:`oms.store.migrations`. A process that
opens a database (:class:`oms.db.Database`) checks its revision once: at the
newest it goes on; empty or behind it refuses with :class:`SchemaBehind`, which
names ``oms db upgrade`` — unless ``OMS_AUTO_UPGRADE`` lets it upgrade itself (by
default the embedded SQLite database does). An upgrade holds a lock from before it
reads the revision until it commits (PostgreSQL: an advisory lock, with the DDL in
the same transaction; SQLite: the write lock ``BEGIN IMMEDIATE`` takes), so
processes upgrading one fresh database at once apply each migration once, and all
of them succeed.

A database made by release 0.1.0 has the tables but no revision: an upgrade checks
that its tables are 0.1.0's, records it at the first revision, then upgrades it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from sqlalchemy import Connection, Engine, create_engine, inspect, text

from ..exceptions import SchemaAhead, SchemaBehind, SchemaError
from ..settings import get_settings

if TYPE_CHECKING:
    from alembic.config import Config

#: The table holding the revision (Alembic's ``alembic_version`` is left to the application's own).
VERSION_TABLE = "oms_schema_version"
#: The revision of release 0.1.0's schema, which that release created without migrations.
BASELINE = "0001"
#: ``pg_advisory_xact_lock`` key that serialises upgrades (any constant; "omsschem" in ASCII).
LOCK_KEY = 0x6F6D_7373_6368_656D
_VERSIONS = Path(__file__).with_name("migrations") / "versions"
_REVISION = re.compile(r"^revision(?:\s*:\s*[\w\[\] |]+)?\s*=\s*['\"](\w+)['\"]", re.MULTILINE)
_DOWN = re.compile(r"^down_revision(?:\s*:\s*[\w\[\], |]+)?\s*=\s*(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade did."""

    #: The revision before (``None``: an empty database, or 0.1.0's, see ``adopted``) and after.
    before: str | None
    after: str | None
    #: The tables were release 0.1.0's, with no revision recorded: they were adopted at :data:`BASELINE`.
    adopted: bool = False


@dataclass(frozen=True)
class Revision:
    """One migration, as ``oms db history`` lists it."""

    revision: str
    down_revision: str | None
    title: str


@cache
def revisions() -> dict[str, tuple[str, ...]]:
    """Every revision shipped, with the revisions it follows, read from the files without importing Alembic.

    Checking a database's revision happens in every process that opens one; Alembic
    (a fifth of a second to import) is loaded only to upgrade.
    """
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(_VERSIONS.glob("*.py")):
        source = path.read_text()
        revision, down = _REVISION.search(source), _DOWN.search(source)
        if revision is None or down is None:
            continue
        found[revision.group(1)] = tuple(re.findall(r"['\"](\w+)['\"]", down.group(1)))
    return found


def head() -> str:
    """The newest revision: the one no other follows."""
    known = revisions()
    heads = set(known) - {parent for parents in known.values() for parent in parents}
    if len(heads) != 1:
        raise SchemaError(f"the shipped migrations have {len(heads)} newest revisions ({', '.join(sorted(heads))}),"
                          " not one: merge them")
    return heads.pop()


def current(connection: Connection) -> str | None:
    """The revision the database is at; ``None`` when none is recorded (empty, or made by 0.1.0)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    found = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(found) > 1:
        raise SchemaError(f"the database records {len(found)} schema revisions ({', '.join(found)}), not one")
    return found[0] if found else None


def has_tables(connection: Connection) -> bool:
    """Whether the engine's tables exist (a 0.1.0 database has them and no revision)."""
    return bool(inspect(connection).has_table("oms_instances"))


def auto_upgrades(dialect: str) -> bool:
    """Whether a database of ``dialect`` brings its schema up to date on first use (``OMS_AUTO_UPGRADE``)."""
    allowed = get_settings().auto_upgrade
    return allowed == "always" or (allowed == "sqlite" and dialect == "sqlite")


def _ahead(found: str | None) -> TypeGuard[str]:
    """Whether the database is at a revision this oms does not ship: a newer oms migrated it."""
    return found is not None and found not in revisions()


def verdict(connection: Connection, shown_url: str) -> SchemaBehind | SchemaAhead | None:
    """What is wrong with the database's schema, as the error to raise or show: ``None`` at the newest revision;
    :class:`SchemaAhead` at a revision this oms does not ship (a newer oms migrated it: upgrade oms);
    :class:`SchemaBehind` with none, or an older one (``oms db upgrade``). Every check of the schema asks this."""
    newest = head()
    found = current(connection)
    if found == newest:
        return None
    if _ahead(found):
        return SchemaAhead(shown_url, found, newest)
    unversioned = found is None and has_tables(connection)
    return SchemaBehind(shown_url, "release 0.1.0's (no revision recorded)" if unversioned else found, newest)


def ensure(engine: Engine, shown_url: str) -> None:
    """Go on if the schema is at the newest revision; upgrade it if ``OMS_AUTO_UPGRADE`` allows; else refuse.

    Raises:
        SchemaBehind: no schema, or an older one; the message names ``oms db upgrade``.
        SchemaAhead: a newer oms migrated the database.
    """
    with engine.connect() as connection:
        problem = verdict(connection, shown_url)
    if problem is None:
        return
    if isinstance(problem, SchemaBehind) and auto_upgrades(engine.dialect.name):
        upgrade(engine)
        return
    raise problem


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config  # noqa: PLC0415 - alembic costs 65 ms: only a migrating process pays

    config = Config()
    config.set_main_option("script_location", "oms.store:migrations")
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> Upgrade:
    """Bring the schema to ``revision`` (the newest by default) under the upgrade lock.

    A database of release 0.1.0 is first checked to have 0.1.0's tables, and recorded
    at :data:`BASELINE`.
    """
    from alembic import command  # noqa: PLC0415 - alembic costs 65 ms: only a migrating process pays

    head()  # refuse several newest revisions before touching anything
    with engine.connect() as connection, _foreign_keys_off(connection), connection.begin():
        # SQLite: BEGIN IMMEDIATE, the database's write lock
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        before = current(connection)
        if _ahead(before):  # Alembic would say "Can't locate revision"
            raise SchemaAhead(engine.url.render_as_string(hide_password=True), before, head())
        config = alembic_config(connection)
        adopted = before is None and has_tables(connection)
        if adopted:
            _check_release_0_1_0(connection)
            command.stamp(config, BASELINE)
        command.upgrade(config, revision)
        return Upgrade(before, current(connection), adopted)


@contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite: no foreign-key actions while migrating.

    A migration that rebuilds a table (Alembic's batch mode: copy, drop, rename) would
    otherwise make SQLite's ``DROP TABLE`` cascade to the rows that refer to it: rebuilding
    ``oms_instances`` would delete every task. The pragma only takes effect outside a
    transaction, so it is set on the driver's connection before the migration's begins.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.dbapi_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


@cache
def _baseline_columns() -> dict[str, list[str]]:
    """The tables and columns of :data:`BASELINE`, as its migration makes them (in an in-memory database)."""
    from alembic import command  # noqa: PLC0415 - alembic costs 65 ms: only a migrating process pays

    scratch = create_engine("sqlite://")
    try:
        with scratch.begin() as connection:
            command.upgrade(alembic_config(connection), BASELINE)
            found = inspect(connection)
            return {table: [column["name"] for column in found.get_columns(table)]
                    for table in found.get_table_names() if table != VERSION_TABLE}
    finally:
        scratch.dispose()


def _check_release_0_1_0(connection: Connection) -> None:
    """Refuse to adopt tables that are not release 0.1.0's: migrating them would fail halfway, or worse."""
    found = inspect(connection)
    for table, columns in _baseline_columns().items():
        have = [column["name"] for column in found.get_columns(table)] if found.has_table(table) else None
        if have is None or set(have) != set(columns):
            difference = "is missing" if have is None else (
                f"has columns {sorted(set(have) ^ set(columns))} that release 0.1.0's has not, or lacks them")
            raise SchemaError(f"the database has oms tables but no schema revision, and table {table} {difference}:"
                              " it was not made by release 0.1.0; upgrade it by hand, or start from an empty database")


def history() -> list[Revision]:
    """Every revision shipped, newest first."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - alembic costs 65 ms (oms db history only)

    return [
        Revision(script.revision, _one(script.down_revision), (script.doc or "").strip().splitlines()[0])
        for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    ]


def _one(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return ", ".join(value)
