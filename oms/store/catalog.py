"""Definitions and calendars in the database: saved as versions, read back once per process and cached.

The model (:mod:`oms.model`) is data; this is where it is stored. A definition's
versions never change, so a parsed one is kept for the life of its
:class:`~oms.store.db.Database`; a calendar may change (another process saves it),
so its schedule is read again after :data:`CALENDAR_SECONDS`.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..exceptions import Conflict, UnknownCalendar, UnknownWorkflow
from ..model.calendars import CalendarDefinition, check_calendar_id
from ..model.definitions import Definition, system_workflow
from ..model.worktime import Schedule
from .db import database, transaction
from .tables import CalendarRow, DefinitionRow

#: Tries at saving a new version while other processes save versions of the same workflow.
SAVE_ATTEMPTS = 20
#: Seconds a process keeps a calendar it read before reading it again (another process may change it).
CALENDAR_SECONDS = 10.0


def _latest(session: Session, workflow_id: str) -> DefinitionRow | None:
    newest = (
        select(func.max(DefinitionRow.version)).where(DefinitionRow.workflow_id == workflow_id).scalar_subquery()
    )
    return session.scalars(
        select(DefinitionRow).where(DefinitionRow.workflow_id == workflow_id, DefinitionRow.version == newest)
    ).first()


def save_definition(definition: Definition, database_url: str | None = None) -> int:
    """Store ``definition`` and return its version: an unchanged one keeps its own, a changed one is n+1.

    Raises:
        Conflict: other processes kept saving versions of the same workflow at the same moment.
    """
    digest = definition.digest()
    for attempt in range(SAVE_ATTEMPTS):
        if attempt:  # another process saved the same version first: back off a little, then read again
            time.sleep(random.uniform(0, 0.01 * attempt))
        try:
            with transaction(database_url) as session:
                latest = _latest(session, definition.id)
                if latest is not None and latest.digest == digest:
                    return latest.version
                version = (latest.version if latest else 0) + 1
                session.add(DefinitionRow(workflow_id=definition.id, version=version, spec=definition.spec(),
                                          digest=digest, created_at=datetime.now(UTC)))
            return version
        except IntegrityError:
            continue
    raise Conflict(f"could not save workflow {definition.id!r}: other processes kept saving versions of it at the "
                   f"same time ({SAVE_ATTEMPTS} tries); nothing was saved, try again")


def ensure_saved(definition: Definition, digest: str | None = None) -> int:
    """Save one of the engine's own definitions once per process and database; return its version.

    Pass ``digest`` when the caller already has it, to keep hashing off hot paths.
    """
    saved = database().saved
    key = (definition.id, digest or definition.digest())
    if key not in saved:
        saved[key] = save_definition(definition)
    return saved[key]


def saved_in(session: Session, definition: Definition, digest: str) -> int:
    """:func:`ensure_saved` in the caller's transaction, for one of the engine's own definitions needed inside one
    (on SQLite another transaction would wait for this one's write lock); return its version.

    Found saved, it is remembered for the process; saved here, it is not until found again (the caller's
    transaction may yet roll back).
    """
    saved: dict[tuple[str, str], int] = session.info["database"].saved
    key = (definition.id, digest)
    if key in saved:
        return saved[key]
    latest = _latest(session, definition.id)
    if latest is not None and latest.digest == digest:
        saved[key] = latest.version
        return latest.version
    version = (latest.version if latest else 0) + 1
    session.add(DefinitionRow(workflow_id=definition.id, version=version, spec=definition.spec(), digest=digest,
                              created_at=datetime.now(UTC)))
    session.flush()
    return version


def load_definition(session: Session, workflow_id: str, version: int | None = None) -> tuple[Definition, int]:
    """``(definition, version)`` from the database (the newest unless ``version`` is given); parsed once per
    process and database, since versions never change. Raises :class:`UnknownWorkflow`."""
    cache: dict[tuple[str, int], Definition] = session.info["database"].definitions
    if version is not None and (cached := cache.get((workflow_id, version))):
        return cached, version
    row = _latest(session, workflow_id) if version is None else session.get(DefinitionRow, (workflow_id, version))
    if row is None:
        raise UnknownWorkflow(workflow_id, version)
    definition = cache.get((workflow_id, row.version))
    if definition is None:
        definition = system_workflow(row.spec)  # checked when saved: later limits must not stop its instances
        cache[(workflow_id, row.version)] = definition
    return definition, row.version


def definition(workflow_id: str, version: int) -> Definition:
    """One version of a definition, from the cache when this process read it before."""
    db = database()
    found = db.definitions.get((workflow_id, version))
    if found is None:
        with db.sessions.begin() as session:
            found, _ = load_definition(session, workflow_id, version)
    return found


# -- calendars ---------------------------------------------------------------------------------------------------------

def save_calendar(calendar: CalendarDefinition) -> bool:
    """Store ``calendar``, replacing one with its id; ``True`` if one was replaced by a different one."""
    digest = calendar.digest()
    with transaction() as session:
        row = session.get(CalendarRow, calendar.id, with_for_update=True)
        if row is not None and row.digest == digest:
            return False
        if row is None:
            session.add(CalendarRow(id=calendar.id, spec=calendar.spec(), digest=digest, updated_at=datetime.now(UTC)))
        else:
            row.spec, row.digest, row.updated_at = calendar.spec(), digest, datetime.now(UTC)
    forget_calendar(calendar.id)
    return row is not None


def calendar_spec(calendar_id: str) -> dict[str, object]:
    """A stored calendar's specification. Raises :class:`~oms.exceptions.UnknownCalendar`.

    Read in a statement of its own, outside any transaction: rows are built (and
    their deadlines computed) inside transitions, where SQLite's one writer holds
    the lock, and a reader must not wait for it.
    """
    with database().autocommit.connect() as conn:
        spec = conn.scalar(select(CalendarRow.spec).where(CalendarRow.id == check_calendar_id(calendar_id)))
    if spec is None:
        raise UnknownCalendar(calendar_id)
    return dict(spec)


def calendar_specs() -> list[dict[str, object]]:
    """Every stored calendar's specification, by id."""
    with transaction() as session:
        return [dict(spec) for spec in session.scalars(select(CalendarRow.spec).order_by(CalendarRow.id))]


def schedule(calendar_id: str | None) -> Schedule | None:
    """The named calendar's working-time arithmetic (``None`` for none: wall time), read at most every
    :data:`CALENDAR_SECONDS`."""
    if calendar_id is None:
        return None
    cache = database().schedules
    found = cache.get(calendar_id)
    if found is None or found[0] < time.monotonic():
        found = (time.monotonic() + CALENDAR_SECONDS, CalendarDefinition(**calendar_spec(calendar_id)).schedule())
        cache[calendar_id] = found
    return found[1]


def forget_calendar(calendar_id: str | None = None) -> None:
    """Drop cached schedules (one calendar's, or all): they are read again on next use."""
    cache = database().schedules
    for key in [k for k in cache if calendar_id is None or k == calendar_id]:
        del cache[key]


def known_calendars(calendar_ids: set[str], database_url: str | None = None) -> set[str]:
    """Which of these calendars are stored."""
    if not calendar_ids:
        return set()
    with transaction(database_url) as session:
        return set(session.scalars(select(CalendarRow.id).where(CalendarRow.id.in_(calendar_ids))))
