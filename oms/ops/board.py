"""The operators' board: per workflow, its steps' open work by light and their recent breaches.

The page's first screen answers "where is work stuck right now?", so it counts
*open* attempts (pending or running) by the light every view shows (recorded or
clock, whichever is worse: :mod:`oms.lights`), and the attempts that went red
with a deadline in the last 24 hours, whether they have finished since or not (a
finished one once the scanner has recorded its breach).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import and_, func, or_, select, union_all

from ..model.names import SYSTEM_PREFIX
from ..states import LIGHTS, OPEN_TASK, RED
from ..store.db import transaction
from ..store.lights import seen_rank
from ..store.tables import DefinitionRow, TaskRow

#: How far back a breach still counts on the board.
BREACH_WINDOW = timedelta(hours=24)


class BoardStep(BaseModel):
    """One step of a workflow on the board."""

    id: str
    green: int = 0
    yellow: int = 0
    red: int = 0
    #: Attempts whose deadline passed in the last 24 h and that went red.
    breaches_24h: int = 0


class BoardWorkflow(BaseModel):
    """A workflow at its latest version, its steps in definition order."""

    id: str
    version: int
    steps: list[BoardStep]


def board(now: datetime | None = None) -> list[BoardWorkflow]:
    """Every saved workflow (not the engine's ``oms.*`` ones) with its steps' open lights and recent breaches."""
    now = now or datetime.now(UTC)
    light = seen_rank(TaskRow.light, TaskRow.warn_at, TaskRow.expires_at, TaskRow.finished_at, now)
    user = ~TaskRow.workflow_id.startswith(SYSTEM_PREFIX)
    open_ = (
        select(TaskRow.workflow_id, TaskRow.step_id, light, func.count())
        # spelled as OR, not IN, so PostgreSQL combines the partial indexes on pending and on running rows
        .where(user, or_(*(TaskRow.status == s.value for s in OPEN_TASK)))
        .group_by(TaskRow.workflow_id, TaskRow.step_id, light)
    )
    window = and_(TaskRow.expires_at > now - BREACH_WINDOW, TaskRow.expires_at <= now)
    # red as recorded (through the partial index on red rows' deadlines), or open and past its deadline before
    # the scanner has seen it (through the partial indexes on open rows): never the whole table
    recorded = select(TaskRow.workflow_id, TaskRow.step_id).where(user, TaskRow.light == RED, window)
    unseen = select(TaskRow.workflow_id, TaskRow.step_id).where(
        user, or_(*(TaskRow.status == s.value for s in OPEN_TASK)), TaskRow.light != RED, window)
    late = union_all(recorded, unseen).subquery()
    breached = select(late.c.workflow_id, late.c.step_id, func.count()).group_by(late.c.workflow_id, late.c.step_id)
    latest = (
        select(DefinitionRow.workflow_id, func.max(DefinitionRow.version).label("version"))
        .where(~DefinitionRow.workflow_id.startswith(SYSTEM_PREFIX))
        .group_by(DefinitionRow.workflow_id)
        .subquery()
    )
    definitions = (
        select(DefinitionRow)
        .join(latest, and_(latest.c.workflow_id == DefinitionRow.workflow_id,
                           latest.c.version == DefinitionRow.version))
        .order_by(DefinitionRow.workflow_id)
    )
    with transaction() as session:
        counts = {(w, s, LIGHTS[r]): n for w, s, r, n in session.execute(open_)}
        breaches = {(w, s): n for w, s, n in session.execute(breached)}
        rows = session.scalars(definitions).all()
        return [
            BoardWorkflow(id=row.workflow_id, version=row.version, steps=[
                BoardStep(id=step_id, breaches_24h=breaches.get((row.workflow_id, step_id), 0),
                          **{lt: counts.get((row.workflow_id, step_id, lt), 0) for lt in LIGHTS})
                for step_id in (s["id"] for s in row.spec["steps"])
            ])
            for row in rows
        ]
