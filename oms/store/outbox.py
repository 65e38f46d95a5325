"""The notices' outbox as its senders and readers use it: claim due notices under a lease, record each attempt,
list what was sent and what failed. (Notices are written by :func:`oms.store.notices.add`.)

A claim is one short transaction: the due rows are locked (``FOR UPDATE SKIP LOCKED``
on PostgreSQL, so concurrent senders take different rows; SQLite has one writer),
their ``next_attempt_at`` is pushed one lease ahead and their ``attempts`` counted,
and it commits before anything is sent. A sender that dies after its claim leaves the
notice to be claimed again once the lease is over; its attempt count is the claim's
fencing token, so a late record of a lapsed claim cannot reschedule a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, String, func, insert, literal_column, select, update

from .db import database, retrying
from .notices import PENDING
from .tables import notice_attempts, notices

#: A notice delivered, and one given up (its ``last_error`` says why).
SENT, FAILED = "sent", "failed"
STATUSES = (PENDING, SENT, FAILED)
#: Longest error or receiver's answer kept per attempt.
MAX_DETAIL = 1000


@dataclass(frozen=True)
class Claimed:
    """A notice a sender holds until ``lease_until``; ``attempt`` is this claim's number (1 for the first)."""

    id: str
    created_at: datetime
    workflow_id: str
    instance_id: str | None
    task_id: str | None
    step_id: str | None
    rung: int | None
    target: str
    facts: dict[str, Any]
    attempt: int
    lease_until: datetime


@dataclass(frozen=True)
class NoticeView:
    """A notice as ``oms notices`` and ``GET /v1/notices`` show it."""

    id: str
    created_at: datetime
    workflow_id: str
    instance_id: str | None
    step_id: str | None
    rung: int | None
    target: str
    #: The light it told of, from its facts.
    light: str | None
    #: ``pending`` (to send at ``next_attempt_at``), ``sent`` (at ``sent_at``) or ``failed`` (``last_error``).
    status: str
    attempts: int
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None


def claim(now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Take up to ``limit`` notices due at ``now``, oldest due first, each until ``now + lease``."""
    until = now + lease
    # the status as a literal: a prepared (generic) plan then uses the partial index ix_oms_notices_due
    pending = literal_column(f"'{PENDING}'", String)
    due = (select(notices).where(notices.c.status == pending, notices.c.next_attempt_at <= now)
           .order_by(notices.c.next_attempt_at).limit(limit).with_for_update(skip_locked=True))

    def work() -> list[Claimed]:
        with database().engine.begin() as conn:
            rows = conn.execute(due).all()
            if rows:
                conn.execute(update(notices).where(notices.c.id.in_([r.id for r in rows]))
                             .values(attempts=notices.c.attempts + 1, next_attempt_at=until))
        return [Claimed(r.id, r.created_at, r.workflow_id, r.instance_id, r.task_id, r.step_id, r.rung, r.target,
                        dict(r.facts or {}), r.attempts + 1, until) for r in rows]

    return retrying(work, "claiming notices")


def record(notice: Claimed, at: datetime, ok: bool, detail: str, retry_at: datetime | None = None) -> None:
    """Record the attempt the claim of ``notice`` made at ``at``, and its outcome: ``ok`` is sent; else a
    ``retry_at`` makes it due again then, and none gives it up (``failed``, ``detail`` its last error)."""
    detail = detail[:MAX_DETAIL]
    mine = (notices.c.id == notice.id) & (notices.c.status == PENDING)
    if ok:
        change = update(notices).where(mine).values(status=SENT, sent_at=at, next_attempt_at=None, last_error=None)
    elif retry_at is None:
        change = update(notices).where(mine).values(status=FAILED, next_attempt_at=None, last_error=detail)
    else:  # only while no later claim has taken it (this one's lease lapsed): that claim will record its own
        change = (update(notices).where(mine, notices.c.attempts == notice.attempt)
                  .values(next_attempt_at=retry_at, last_error=detail))

    def work() -> None:
        with database().engine.begin() as conn:
            conn.execute(insert(notice_attempts).values(notice_id=notice.id, at=at, ok=ok, detail=detail))
            conn.execute(change)

    retrying(work, "recording a notice's attempt")


def _view(row: Row[Any]) -> NoticeView:
    light = (row.facts or {}).get("light")
    return NoticeView(row.id, row.created_at, row.workflow_id, row.instance_id, row.step_id, row.rung, row.target,
                      light if isinstance(light, str) else None, row.status, row.attempts, row.next_attempt_at,
                      row.sent_at, row.last_error)


def list_notices(*, status: str | None = None, since: datetime | None = None, limit: int = 100) -> list[NoticeView]:
    """Notices written since ``since`` (all, or those of ``status``), newest first, at most ``limit``."""
    query = select(notices).order_by(notices.c.created_at.desc(), notices.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(notices.c.status == status)
    if since is not None:
        query = query.where(notices.c.created_at >= since)

    def read() -> list[NoticeView]:
        with database().reader.connect() as conn:
            return [_view(row) for row in conn.execute(query)]

    return retrying(read, "reading notices")


@dataclass(frozen=True)
class Attempt:
    at: datetime
    ok: bool
    detail: str | None


def attempts(notice_id: str) -> list[Attempt]:
    """Every recorded attempt at sending ``notice_id``, first first."""
    query = (select(notice_attempts.c.at, notice_attempts.c.ok, notice_attempts.c.detail)
             .where(notice_attempts.c.notice_id == notice_id).order_by(notice_attempts.c.id))

    def read() -> list[Attempt]:
        with database().reader.connect() as conn:
            return [Attempt(r.at, r.ok, r.detail) for r in conn.execute(query)]

    return retrying(read, "reading a notice's attempts")


@dataclass(frozen=True)
class Backlog:
    """The outbox at a glance (``oms doctor``): notices sent and given up since a moment, those waiting, and the
    longest any due one has waited."""

    sent: int
    failed: int
    pending: int
    #: The earliest ``next_attempt_at`` of a pending notice already due, or ``None``.
    oldest_due: datetime | None
    #: The last error of the newest notice given up.
    last_error: str | None


def backlog(since: datetime, now: datetime) -> Backlog:
    """How the outbox stands at ``now``, counting the notices sent and failed since ``since``."""
    by_status = (select(notices.c.status, func.count()).where(notices.c.created_at >= since)
                 .group_by(notices.c.status))
    pending = select(func.count()).where(notices.c.status == PENDING)
    due = select(func.min(notices.c.next_attempt_at)).where(notices.c.status == PENDING,
                                                            notices.c.next_attempt_at <= now)
    newest_failure = (select(notices.c.last_error).where(notices.c.status == FAILED, notices.c.created_at >= since)
                      .order_by(notices.c.created_at.desc()).limit(1))

    def read() -> Backlog:
        with database().reader.connect() as conn:
            counts = {status: count for status, count in conn.execute(by_status)}
            return Backlog(counts.get(SENT, 0), counts.get(FAILED, 0), conn.execute(pending).scalar() or 0,
                           conn.execute(due).scalar(),
                           conn.execute(newest_failure).scalar())

    return retrying(read, "reading the notices' outbox")
