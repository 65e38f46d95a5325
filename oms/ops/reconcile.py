"""The reconciler: publish again the steps whose message the broker lost.

The database says a step is queued; if it has waited longer than
``OMS_RECONCILE_AFTER`` since it was last published and its topic's queue is
empty, no message can still be on its way (a broker restarted without
persistence, a crash between commit and publish, a worker that dropped it). The
step is published again from its definition and the event log says so
(``task.redispatched``). A step still in a backlog is left alone, and a message
that does arrive twice is a no-op: the second claim finds nothing pending.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from kombu.exceptions import ChannelError, OperationalError
from sqlalchemy import or_, select

from ..celery.app import current
from ..celery.compiler import step_queue
from ..celery.dispatch import Dispatch, engine_publishes, publish_all
from ..durations import utcnow
from ..settings import get_settings
from ..states import EventKind, InstanceStatus, StepKind, TaskStatus
from ..store import runs
from ..store.catalog import load_definition
from ..store.db import transaction
from ..store.events import record
from ..store.tables import InstanceRow, TaskRow

logger = logging.getLogger(__name__)

#: The topics of steps no worker runs.
NO_MESSAGE = [kind.topic for kind in StepKind if kind is not StepKind.WORKER]


def queue_state(topic: str) -> tuple[int, int] | None:
    """``(messages waiting, consumers)`` of a topic's queue; zeros if it does not exist; ``None`` if the broker is down.

    Only RabbitMQ counts consumers; Redis and the filesystem transport say 0.
    """
    try:
        with current().connection_for_read() as conn:
            _, count, consumers = conn.default_channel.queue_declare(queue=topic, passive=True)
            return int(count), int(consumers or 0)
    except ChannelError:
        return 0, 0
    except (OperationalError, OSError):
        return None


def queue_size(topic: str) -> int | None:
    """Messages waiting on a topic's queue; 0 if it does not exist; ``None`` if the broker is down."""
    state = queue_state(topic)
    return None if state is None else state[0]


def reconcile(now: datetime | None = None, *, batch: int = 500) -> int:
    """Re-publish queued steps that no message serves any more; return how many."""
    started = runs.utcnow()
    now = now or utcnow()
    cutoff = now - timedelta(seconds=get_settings().reconcile_after)
    with transaction() as session:
        rows = session.execute(
            select(TaskRow, InstanceRow.version)
            .join(InstanceRow, InstanceRow.id == TaskRow.instance_id)
            .where(
                TaskRow.status == TaskStatus.PENDING.value,
                TaskRow.ready_at <= cutoff,
                or_(TaskRow.dispatched_at.is_(None), TaskRow.dispatched_at <= cutoff),
                InstanceRow.status == InstanceStatus.RUNNING.value,
                TaskRow.topic.not_in(NO_MESSAGE),  # a person, a signal or a timer ends these: never published
            )
            .order_by(TaskRow.ready_at)
            .with_for_update(of=TaskRow, skip_locked=True)
            .limit(batch)
        ).all()
        # read in this transaction: another one would wait for its lock on SQLite
        defined = {(task.workflow_id, version): load_definition(session, task.workflow_id, version)[0]
                   for task, version in rows}
        ours = [(task, version) for task, version in rows
                if engine_publishes(defined[task.workflow_id, version], task.step_index)]
        # a task step's queue is the one its task is routed to, not its topic's
        queues = {id(task): step_queue(current(), defined[task.workflow_id, version].steps[task.step_index])
                  for task, version in ours}
        sizes = {queue: queue_size(queue) for queue in set(queues.values())}
        dispatches = []
        for task, version in ours:
            if sizes[queues[id(task)]] != 0:  # a backlog may still hold its message; or the broker is down
                continue
            task.dispatched_at = now
            record(session, EventKind.TASK_REDISPATCHED, task.instance_id, now, task,
                                     waited_s=round((now - task.ready_at).total_seconds(), 3))
            dispatches.append(Dispatch(task.instance_id, task.workflow_id, version, task.step_index, 0.0,
                                       task.item_index))
    publish_all(dispatches)
    if dispatches:
        logger.info("reconciler re-published %d step(s)", len(dispatches))
    runs.record(runs.RECONCILE, started, len(dispatches), details={"republished": len(dispatches)})
    return len(dispatches)
