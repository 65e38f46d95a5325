"""Timers: steps with ``sleep`` end by themselves when their time has passed, exactly once, whoever scans.

A timer is queued on the engine's ``oms.timer`` topic with its ``wake_at`` (its sleep
counted in its calendar's working time, or wall time). The SLA scan reads the due
ones through a partial index, which holds only timers still to end, so ten thousand
sleeping timers cost a scan one index probe. Each ends in a transaction of its own,
under its instance's lock, only if still queued: two scans that read the same timer
end it once. A cancelled instance's timers are cancelled with its other steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Row, ScalarSelect, func, select

from ..celery.dispatch import Dispatch
from ..exceptions import InstanceFinished, TaskAlreadyFinished
from ..model.task import Task
from ..model.worktime import format_sla
from ..states import TaskStatus
from ..store import moves
from ..store.catalog import definition
from ..store.db import TRANSIENT, database, retrying
from ..store.portable import as_task
from ..store.tables import literal, tasks
from .plan import Outcome, Plan, apply_in_transaction, dispatches

__all__ = ["soonest_wake", "wake_timers"]

logger = logging.getLogger(__name__)


#: A timer still to end: the condition of its partial index.
_SLEEPING = (tasks.c.wake_at.is_not(None), tasks.c.status == literal(TaskStatus.PENDING))


def soonest_wake() -> ScalarSelect[Any]:
    """When the first timer still to end is due: an index probe."""
    return select(func.min(tasks.c.wake_at)).where(*_SLEEPING).scalar_subquery()


def _due(now: datetime, limit: int) -> list[Row[Any]]:
    with database().reader.connect() as conn:
        return list(conn.execute(moves.with_instance(tasks).where(*_SLEEPING, tasks.c.wake_at <= now)
                                 .order_by(tasks.c.wake_at).limit(limit)))


def wake_timers(now: datetime, *, limit: int = 1000,
                on_error: Callable[[Task, BaseException], None] | None = None) -> tuple[int, list[Dispatch]]:
    """End the timers due at ``now`` (at most ``limit``); return how many this call ended, and what to publish.

    A timer that cannot be ended is logged (and given to ``on_error``); the others are.
    """
    db = database()
    ended, published = 0, []
    for row in retrying(partial(_due, now, limit), "reading due timers"):
        task = as_task(row)
        try:
            workflow = definition(task.workflow_id, task.version)
            step = workflow.steps[task.step_index]
            assert step.sleep is not None
            slept = format_sla(step.sleep)  # as the definition says it: 10m, 10bd
            plan = Plan(workflow, task, Outcome.arrived(None, slept=slept), now)
            offered = retrying(partial(apply_in_transaction, db, plan), "ending a timer")
        except TRANSIENT:
            raise
        except (TaskAlreadyFinished, InstanceFinished):
            continue
        except Exception as exc:
            logger.error("cannot end timer %s (%s: %s)", task.id, type(exc).__name__, exc, exc_info=exc)
            if on_error is not None:
                on_error(task, exc)
            continue
        if offered is None:
            continue  # another scan ended it, or its instance ended first
        ended += 1
        published += dispatches(task, offered)
    return ended, published
