"""The upkeep's own log: every SLA scan, reconciler pass and prune records a run; a missing scanner is loud.

Without beat nothing sends the scan: no breach is recorded or escalated and a dead
worker's step is never offered again, silently. So the newest scan is watched: when
none has run for three scan intervals, workers (push and pull) log a WARNING once a
minute, ``oms list`` and ``oms status`` print it above their output and ``oms
doctor`` fails.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select

from ..settings import celery_command, get_settings
from .db import database, retrying, transaction
from .tables import RunRow

logger = logging.getLogger(__name__)

#: Kinds of run.
SCAN, RECONCILE, PRUNE = "scan", "reconcile", "prune"
#: Runs older than this are deleted as new ones are recorded.
KEPT = timedelta(days=7)
#: A scan is missing once none has run for this many scan intervals.
MISSED_SCANS = 3
#: Seconds between a worker's warnings while no scan runs.
WARN_EVERY = 60.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def record(kind: str, started_at: datetime, rows: int, *, errors: int = 0,
           details: dict[str, Any] | None = None) -> None:
    """Record one finished run (and, every :data:`FORGET_EVERY`, forget runs of its kind older than :data:`KEPT`).

    A scan runs every few seconds: its record is one ``INSERT`` in one round trip, so a
    scan with no news stays cheap.
    """
    now = utcnow()
    row = {"kind": kind, "started_at": started_at, "finished_at": now, "rows": rows, "errors": errors,
           "details": details or {}, "host": f"{socket.gethostname()}:{os.getpid()}"[:255]}

    def write() -> None:
        with database().autocommit.connect() as conn:  # one statement, its own transaction: one round trip
            conn.execute(insert(RunRow), row)
            if time.monotonic() >= _forget_at.get(kind, 0.0):
                _forget_at[kind] = time.monotonic() + FORGET_EVERY
                conn.execute(delete(RunRow).where(RunRow.kind == kind, RunRow.finished_at < now - KEPT))

    retrying(write, f"recording a {kind} run")  # a run that waited out an outage is still recorded


#: Seconds between a process's deletions of old runs, by kind.
FORGET_EVERY = 600.0
_forget_at: dict[str, float] = {}


def last_run(kind: str) -> RunRow | None:
    """The newest run of ``kind``, if any was recorded."""
    with transaction() as session:
        return session.scalars(select(RunRow).where(RunRow.kind == kind).order_by(RunRow.finished_at.desc())
                               .limit(1)).first()


def missing_scan(now: datetime | None = None) -> str | None:
    """What to tell the operator when no SLA scan has run for three scan intervals; ``None`` while they run."""
    interval = get_settings().sla_scan_interval
    found = last_run(SCAN)
    if found is None:
        return f"no SLA scan has run yet: is `{celery_command('beat')}` running (and a worker on the `oms` queue)?"
    age = ((now or utcnow()) - found.finished_at).total_seconds()
    if age <= MISSED_SCANS * interval:
        return None
    return f"no SLA scan for {age:.0f} s: is `{celery_command('beat')}` running (and a worker on the `oms` queue)?"
