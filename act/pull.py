"""Pull workers: ``fetch_task`` / ``complete_task`` / ``fail_task`` / ``extend_lease``, and their batches.

For code that is not a Celery worker. A step is offered on its topic's queue; a
pull worker claims it in the database with a lease (fetch-and-lock) and must
complete, fail or extend it before the lease runs out, or the step is offered
again. Push and pull workers share the queue: whoever claims the row first runs
the step. ``fetch_tasks`` / ``complete_tasks`` / ``fail_tasks`` do the same for
many steps per round trip.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from kombu.connection import Connection
from kombu.simple import SimpleQueue

from oms.celery.app import current
from oms.celery.forks import forget
from oms.celery.watch import ScanWatch
from oms.engine import checks, door
from oms.engine.door import LongPoll, Task, TaskOutcome

_local = threading.local()
#: Warns, at most once a minute, while no SLA scan runs (lapsed claims are then never re-offered).
_scans: ScanWatch | None = None


def _connection() -> Connection:
    """This thread's broker connection, reopened when the broker changes: its URL, or its options (the embedded
    broker's URL is always the same, its folder is in the options)."""
    app = current()
    broker = (app.conf.broker_url, repr(app.conf.broker_transport_options))
    conn: Connection | None = getattr(_local, "connection", None)
    if conn is None or getattr(_local, "broker", None) != broker:
        if conn is not None:
            with contextlib.suppress(Exception):  # the old broker may be gone; the connection is dropped anyway
                conn.release()  # type: ignore[no-untyped-call]
        # Short polls: Redis blocks each BRPOP for ``polling_interval`` (1 s by default),
        # which would let a fetch overrun its ``max_wait`` by up to that much.
        conn = app.connection_for_read(transport_options={"polling_interval": 0.05})
        _local.connection, _local.broker = conn, broker
    return conn


def _forget_in_child() -> None:
    """A forked child opens its own broker connection: the parent's is neither used nor closed here."""
    global _local, _scans
    forget(getattr(_local, "connection", None))
    _local, _scans = threading.local(), None


os.register_at_fork(after_in_child=_forget_in_child)


def _wait_for_offer(topic: str, timeout: float) -> None:
    """Block until a message arrives on the topic's queue (or ``timeout``); consume it.

    The message only wakes us: the claim is made in the database, which also
    serves steps whose message was lost or taken by a push worker that lost the race.
    """
    queue = SimpleQueue(_connection(), current().amqp.queues[topic], no_ack=False)  # type: ignore[no-untyped-call]
    try:
        queue.consumer.qos(prefetch_count=1)
        message = queue.get(block=True, timeout=timeout)  # type: ignore[no-untyped-call]
        message.ack()
    except queue.Empty:
        pass
    finally:
        queue.close()  # type: ignore[no-untyped-call]


def fetch_task(
    topic: str,
    max_wait: str | float | timedelta = "10s",
    lease: str | float | timedelta = "5m",
    worker_id: str | None = None,
) -> Task | None:
    """Claim the next step on ``topic``, waiting up to ``max_wait``; ``None`` if none came.

    The returned task is leased to this worker until ``task.lease_expires_at``:
    finish it with :func:`complete_task` or :func:`fail_task`, or keep it with
    :func:`extend_lease`. The lapse itself ends the claim: from then on this
    worker's calls on it raise ``LeaseLost`` and change nothing, and the next sweep
    makes the step available again (attempt + 1).
    """
    poll, lease_td, worker = _fetching(topic, max_wait, lease, worker_id)
    while True:
        step = poll.after(door.claim_topic(topic, worker, lease_td))
        if not isinstance(step, float):
            return step
        _wait_for_offer(topic, step)


def fetch_tasks(
    topic: str,
    max_tasks: int = 10,
    max_wait: str | float | timedelta = "10s",
    lease: str | float | timedelta = "5m",
    worker_id: str | None = None,
) -> list[Task]:
    """Claim up to ``max_tasks`` steps on ``topic`` at once (one statement), waiting up to ``max_wait`` for the
    first; ``[]`` if none came.

    A long poll like :func:`fetch_task`: it returns as soon as at least one step is
    there, with every due step it could claim up to ``max_tasks`` (1 to 1,000), each
    leased to this worker until its ``lease_expires_at``. Finish them with
    :func:`complete_tasks` / :func:`fail_tasks` (or one at a time).
    """
    checks.check_batch(max_tasks, "max_tasks")
    poll, lease_td, worker = _fetching(topic, max_wait, lease, worker_id)
    while True:
        found, due = door.claim_tasks(topic, worker, lease_td, max_tasks)
        if found:
            return found
        wait = poll.wait(due)
        if wait is None:
            return []
        _wait_for_offer(topic, wait)


def _fetching(topic: str, max_wait: str | float | timedelta, lease: str | float | timedelta,
              worker_id: str | None) -> tuple[LongPoll, timedelta, str]:
    """A fetch's arguments, checked: its long poll, its lease and who holds what it claims."""
    global _scans
    checks.check_topic(topic)
    _scans = _scans or ScanWatch()
    _scans.check()
    poll = LongPoll(checks.seconds(max_wait, "max_wait"))
    lease_td = timedelta(seconds=checks.seconds(lease, "lease", positive=True))
    worker = checks.check_worker_id(worker_id) if worker_id is not None else door.default_worker_id()
    return poll, lease_td, worker


def complete_task(task_id: str, result: dict[str, Any] | None = None, worker_id: str | None = None) -> bool:
    """Mark the task done (storing ``result``, a JSON object) and move its workflow on; ``True``.

    Only the worker holding the task's lease may: ``worker_id``, by default the one
    :func:`fetch_task` used in this process (its own ``host:pid`` unless given another).
    The same holder completing it again with the same result (its first call's answer
    was lost) changes nothing and returns ``False``: a repeat, not a conflict.

    Raises:
        TaskNotFound, TaskAlreadyFinished, LeaseLost, TaskNotClaimed, NotLeaseHolder, InstanceFinished:
            the task cannot be completed as it stands (``TaskAlreadyFinished``: finished by
            another worker, or with another result); nothing was changed.
        InvalidPayload: ``result`` is not a JSON object.
    """
    return not door.complete(task_id, result, worker_id=worker_id).repeat


def fail_task(task_id: str, reason: str, worker_id: str | None = None) -> bool:
    """Mark the task failed with ``reason``; it is retried per its step's rules or fails the instance. ``True``;
    ``False`` for the holder's repeat of the same failure, which changes nothing.

    Only the worker holding the task's lease may (see :func:`complete_task`).
    """
    return not door.fail(task_id, reason, worker_id=worker_id).repeat


def complete_tasks(items: Iterable[tuple[str, dict[str, Any] | None]], worker_id: str | None = None,
                   ) -> list[TaskOutcome]:
    """Complete many tasks in one transaction: ``(task_id, result)`` each; one :class:`TaskOutcome` per item, in
    order.

    Each task is judged on its own, as :func:`complete_task` would judge it: one it
    would refuse (``LeaseLost``, ``TaskAlreadyFinished``, ``TaskNotFound``, a result
    that is not a JSON object…) is ``refused``, with the error's name and detail, and
    changes nothing; the others are ``done``. Joins and next steps follow as for
    single completions. ``worker_id`` as for :func:`complete_task`.
    """
    return door.complete_many(list(items), worker_id=worker_id)


def fail_tasks(items: Iterable[tuple[str, str]], worker_id: str | None = None) -> list[TaskOutcome]:
    """Fail many tasks in one transaction: ``(task_id, reason)`` each; each outcome ``failed`` (retried per its
    step, or its instance failed, as :func:`fail_task`) or ``refused`` (see :func:`complete_tasks`)."""
    return door.fail_many(list(items), worker_id=worker_id)


def extend_lease(task_id: str, lease: str | float | timedelta = "5m", worker_id: str | None = None) -> datetime:
    """Keep a fetched task for ``lease`` more from now; return the new expiry (its holder only)."""
    return door.extend(task_id, lease, worker_id=worker_id)
