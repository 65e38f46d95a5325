"""Pull workers: ``fetch_task`` / ``complete_task`` / ``fail_task`` / ``extend_lease``.

For code that is not a Celery worker. A step is offered on its topic's queue; a
pull worker claims it in the database with a lease (fetch-and-lock) and must
complete, fail or extend it before the lease runs out, or the step is offered
again. Push and pull workers share the queue: whoever claims the row first runs
the step.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from kombu import Connection
from kombu.simple import SimpleQueue

from oms import transitions
from oms.celery import app
from oms.db import retrying, transaction
from oms.definitions import check_name
from oms.durations import parse_duration
from oms.engine import publish, publish_all, utcnow
from oms.exceptions import InvalidArgument, check_id
from oms.jsonvalue import json_object
from oms.settings import get_settings

from .task import Task

_local = threading.local()


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _seconds(value: str | float | timedelta, what: str) -> float:
    try:
        seconds = parse_duration(value).total_seconds()
    except ValueError as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    if seconds < 0:
        raise InvalidArgument(f"{what} must not be negative, got {value!r}")
    return seconds


def _connection() -> Connection:
    """This thread's broker connection, reopened when the broker URL changes."""
    url = app.conf.broker_url
    conn: Connection | None = getattr(_local, "connection", None)
    if conn is None or getattr(_local, "url", None) != url:
        if conn is not None:
            try:
                conn.release()
            except Exception:  # the old broker may be gone; the connection is dropped anyway
                pass
        # Short polls: Redis blocks each BRPOP for ``polling_interval`` (1 s by default),
        # which would let a fetch overrun its ``max_wait`` by up to that much.
        conn = app.connection_for_read(transport_options={"polling_interval": 0.05})
        _local.connection, _local.url = conn, url
    return conn


#: Seconds between lease sweeps by one process on one topic (the SLA scanner sweeps too).
_SWEEP_EVERY = 1.0
_swept: dict[str, float] = {}


def _try_claim(topic: str, worker_id: str, lease: timedelta) -> tuple[Task | None, datetime | None]:
    """Claim a due step on ``topic``; otherwise say when something next becomes due."""
    now = utcnow()
    expired = []
    with transaction() as session:
        if time.monotonic() - _swept.get(topic, 0.0) >= _SWEEP_EVERY:
            _swept[topic] = time.monotonic()
            expired = transitions.expire_leases(session, now, topic=topic)
        claimed = transitions.claim_topic(session, topic, worker_id, now, lease)
        if claimed is None:
            task, due = None, transitions.next_due_at(session, topic)
        else:
            task, due = Task.from_row(*claimed), None
    publish_all(expired)
    return task, due


def _wait_for_offer(topic: str, timeout: float) -> None:
    """Block until a message arrives on the topic's queue (or ``timeout``); consume it.

    The message only wakes us: the claim is made in the database, which also
    serves steps whose message was lost or taken by a push worker that lost the race.
    """
    queue = SimpleQueue(_connection(), app.amqp.queues[topic], no_ack=False)
    try:
        queue.consumer.qos(prefetch_count=1)
        message = queue.get(block=True, timeout=timeout)
        message.ack()
    except queue.Empty:
        pass
    finally:
        queue.close()


def fetch_task(
    topic: str,
    max_wait: str | float | timedelta = "10s",
    lease: str | float | timedelta = "5m",
    worker_id: str | None = None,
) -> Task | None:
    """Claim the next step on ``topic``, waiting up to ``max_wait``; ``None`` if none came.

    The returned task is leased to this worker until ``task.lease_expires_at``:
    finish it with :func:`complete_task` or :func:`fail_task`, or keep it with
    :func:`extend_lease`. A lease that runs out makes the step available again
    (attempt + 1) and makes this worker's later calls on it raise ``LeaseLost``.
    """
    check_name(topic, "topic")
    wait = _seconds(max_wait, "max_wait")
    lease_td = timedelta(seconds=_seconds(lease, "lease"))
    if lease_td <= timedelta(0):
        raise InvalidArgument(f"lease must be positive, got {lease!r}")
    worker = worker_id or _default_worker_id()
    deadline = time.monotonic() + wait
    while True:
        task, due = _try_claim(topic, worker, lease_td)
        remaining = deadline - time.monotonic()
        if task is not None or remaining <= 0:
            return task
        if due is not None:  # a retry's backoff or a lease ends: wake then, and sweep
            remaining = min(remaining, max((due - utcnow()).total_seconds(), 0.0) + 0.01)
            _swept.pop(topic, None)
        _wait_for_offer(topic, remaining)


def complete_task(task_id: str, result: dict[str, Any] | None = None) -> None:
    """Mark the task done (storing ``result``, a JSON object) and move its workflow on.

    Raises:
        TaskNotFound, TaskAlreadyFinished, LeaseLost, TaskNotClaimed, InstanceFinished:
            the task cannot be completed as it stands; nothing was changed.
        InvalidPayload: ``result`` is not a JSON object.
    """
    check_id(task_id, "task")
    if result is not None:
        result = json_object(result, what="result", max_bytes=get_settings().max_payload_bytes)
    stored = result

    def record() -> transitions.Dispatch | None:
        with transaction() as session:
            return transitions.complete(session, task_id, stored, utcnow())

    publish(retrying(record, "completing a task"))


def fail_task(task_id: str, reason: str) -> None:
    """Mark the task failed with ``reason``; it is retried per its step's rules or fails the instance."""
    check_id(task_id, "task")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidArgument("fail_task needs a reason: a non-empty string saying what went wrong")

    def record() -> transitions.Dispatch | None:
        with transaction() as session:
            return transitions.fail(session, task_id, reason, utcnow())

    publish(retrying(record, "failing a task"))


def extend_lease(task_id: str, lease: str | float | timedelta = "5m") -> datetime:
    """Keep a fetched task for ``lease`` more from now; return the new expiry."""
    check_id(task_id, "task")
    seconds = _seconds(lease, "lease")
    if seconds <= 0:
        raise InvalidArgument(f"lease must be positive, got {lease!r}")
    with transaction() as session:
        return transitions.extend_lease(session, task_id, timedelta(seconds=seconds), utcnow())
