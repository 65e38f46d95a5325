"""The notices' outbox as written: rows added in the caller's transaction, so a notice exists exactly when the
escalation that decided it does; a Celery task sends them after it commits (:mod:`oms.notify`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from .tables import notices

#: A notice waiting to be sent.
PENDING = "pending"


def notice_id() -> str:
    """A new notice's id: what its receiver deduplicates on (a webhook's header, an e-mail's Message-ID)."""
    return f"nt-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Notice:
    """One notice to one target (``user:alice``, ``group:supervisors``, a channel's name)."""

    workflow_id: str
    target: str
    facts: dict[str, Any]
    instance_id: str | None = None
    task_id: str | None = None
    step_id: str | None = None
    rung: int | None = None
    id: str = field(default_factory=notice_id)


def add(conn: Connection, batch: list[Notice], now: datetime) -> list[str]:
    """Write ``batch`` to the outbox, due at once, in the caller's transaction; return their ids."""
    if batch:
        conn.execute(insert(notices), [
            {"id": n.id, "created_at": now, "instance_id": n.instance_id, "task_id": n.task_id,
             "workflow_id": n.workflow_id, "step_id": n.step_id, "rung": n.rung, "target": n.target,
             "facts": n.facts, "status": PENDING, "attempts": 0, "next_attempt_at": now}
            for n in batch])
    return [n.id for n in batch]
