"""``oms db upgrade | current | history``: the schema's migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from ..exceptions import SchemaAhead
from ..settings import get_settings
from ..store.db import connect, safe_url, unreachable
from ..store.schema import BASELINE, has_tables, head, verdict
from ..store.schema import current as revision_of
from ..store.schema import history as revisions
from ..store.schema import upgrade as run_upgrade
from .base import CONTEXT, OmsGroup


@contextmanager
def _engine() -> Iterator[tuple[Engine, str]]:
    """The configured database's engine (its schema unchecked: fixing it is the point) and its URL, password hidden."""

    url = get_settings().database_url
    engine = connect(url)
    try:
        yield engine, safe_url(url)
    except OperationalError as exc:
        raise unreachable(url, exc) from None
    finally:
        engine.dispose()


@click.group(cls=OmsGroup, context_settings=CONTEXT)
def db() -> None:
    """Migrate the database's schema, and see which revision it is at.

    \b
    Examples:
      oms db upgrade      # before the first worker, and after installing a new oms
      oms db current
    """


@db.command(context_settings=CONTEXT)
def upgrade() -> None:
    """Bring the schema to the newest revision (creating it in an empty database).

    Safe to run from several processes at once, and again: a database already at the
    newest revision is left alone. A database made by release 0.1.0 is adopted, then
    upgraded. Workers, beat and the oms command refuse to use a database until this
    has run (the embedded SQLite database upgrades itself; see OMS_AUTO_UPGRADE).

    \b
    Examples:
      oms db upgrade
      OMS_DATABASE_URL=postgresql://oms@db/oms oms db upgrade && oms worker -I my_handlers
    """

    with _engine() as (engine, shown):
        done = run_upgrade(engine)
    if done.adopted:
        click.echo(f"{shown}: adopted release 0.1.0's tables at revision {BASELINE}, upgraded to revision {done.after}")
    elif done.before == done.after:
        click.echo(f"{shown}: already at revision {done.after} (the newest)")
    else:
        click.echo(f"{shown}: upgraded from {done.before or 'an empty database'} to revision {done.after}")


@db.command(context_settings=CONTEXT)
def current() -> None:
    """Print the revision the database is at, and whether it is the newest.

    \b
    Examples:
      oms db current
    """

    newest = head()
    with _engine() as (engine, shown), engine.connect() as connection:
        found = revision_of(connection)
        unversioned = found is None and has_tables(connection)
        problem = verdict(connection, shown)
    if problem is None:
        state = "the newest"
    elif isinstance(problem, SchemaAhead):
        state = f"ahead of {newest}, the newest this oms knows: a newer oms migrated it; upgrade oms"
    elif unversioned:
        state = f"release 0.1.0's tables, no revision recorded; run `oms db upgrade` to reach {newest}"
    elif found is None:
        state = f"no schema; run `oms db upgrade` to create it at {newest}"
    else:
        state = f"behind {newest}; run `oms db upgrade`"
    click.echo(f"{shown}: {found or '-'} ({state})")


@db.command(context_settings=CONTEXT)
def history() -> None:
    """List the schema's revisions, newest first.

    \b
    Examples:
      oms db history
    """
    for revision in revisions():
        click.echo(f"{revision.revision}  (after {revision.down_revision or 'nothing'})  {revision.title}")
