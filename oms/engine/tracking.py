"""Celery's own signals recorded on tracked instances (:func:`oms.track`, ``@shared_task(sla=...)``).

Each receiver returns at once, with no database access, for a task that is not
tracked: a tracked canvas's task carries the id ``<instance_id>.<step index>``; a
task tracked on its own carries an ``sla`` attribute. The rest goes through the
door, as any worker's outcome does:

* ``before_task_publish`` of a self-tracked task starts its one-step instance (the
  step queued, its clock started); a canvas's steps are queued by the instance's
  graph, when their predecessors are done, the moment Celery publishes them;
* ``task_prerun`` claims the step, leased and kept alive by a heartbeat thread;
* ``task_success`` completes it (the result as :func:`~oms.celery.tracked.stored_result` stores it);
* ``task_failure`` fails it and its instance (Celery decided not to retry);
* ``task_retry`` fails the attempt and queues the next one (``task.retried``);
* ``task_revoked`` cancels the instance.

A worker killed between a task's end and the record stops beating: the scanner's
sweep settles the lapsed claim from the result backend (:meth:`oms.engine.door.Door.sweep`).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from typing import Any

from celery import current_app
from celery.signals import before_task_publish, task_failure, task_prerun, task_retry, task_revoked, task_success
from sqlalchemy import select

from ..celery.tracked import CELERY_ID, parse_tracked_id, stored_result
from ..exceptions import OmsError
from ..model.definitions import Definition
from ..states import InstanceStatus
from ..store.catalog import ensure_saved
from ..store.db import database
from ..store.tables import instances
from . import control, door
from .checks import storable_reason
from .starts import start

__all__ = ["connect", "self_tracked_definition", "workflow_name", "step_name", "TRACKED_RETRIES"]

logger = logging.getLogger(__name__)

#: A tracked step's ``retries``: Celery decides when to retry; this is only the ceiling.
TRACKED_RETRIES = 1000
#: How long ``task_prerun`` waits for its step to be queued: Celery publishes a chain's next task (and a chord's
#: body) just before the task before it reports its success.
QUEUED_WAIT = 5.0
_KEY = "celery:"
_UNNAMEABLE = re.compile(r"[^A-Za-z0-9_.-]")


def step_name(task_name: str) -> str:
    """A step id for a Celery task: the last part of its name, as a name may be written."""
    short = _UNNAMEABLE.sub("_", task_name.rsplit(".", 1)[-1]).lstrip("_.-") or "task"
    return short[:120]


def workflow_name(task_name: str) -> str:
    """The workflow a self-tracked task's runs are grouped under: the task's name, as a name may be written."""
    return (_UNNAMEABLE.sub("_", task_name).lstrip("_.-") or "task")[:128]


def self_tracked_definition(task_name: str, sla: Any) -> Definition:
    """The one-step definition of a task tracked on its own (``@shared_task(sla=...)``)."""
    return Definition(id=workflow_name(task_name), tracked=True, steps=[
        {"id": step_name(task_name), "task": task_name, "sla": sla, "after": [], "retries": TRACKED_RETRIES}])


# -- what a task is ----------------------------------------------------------------------------------------------------


def _sla_of(task: Any) -> Any:
    return getattr(task, "sla", None)


def _self_instance(task: Any, celery_id: str) -> str | None:
    """The instance a self-tracked task's publish started (``None``: none was)."""
    store = database().store
    found = store.started_with(workflow_name(task.name), _KEY + celery_id)
    return None if found is None else str(found[0])


def _where(celery_id: Any, task: Any) -> tuple[str, int] | None:
    """``(instance_id, step index)`` of a tracked task; ``None`` (at once, for an untracked one) otherwise."""
    where = parse_tracked_id(celery_id)
    if where is not None:
        return where
    if not isinstance(celery_id, str) or _sla_of(task) is None:
        return None
    instance_id = _self_instance(task, celery_id)
    return None if instance_id is None else (instance_id, 0)


# -- leases kept alive -----------------------------------------------------------------------------------------------


class _Heart:
    """Beats for the tracked steps this process runs, so that their claims outlive ``OMS_WORKER_LEASE``."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._run, name="oms-track-heartbeat", daemon=True).start()

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGALRM})  # time limits are the task's
        while True:
            time.sleep(door.heartbeat_interval())
            with self.lock:
                ids = list(self.held)
            if ids:
                try:
                    door.heartbeat(ids)
                except Exception:  # a missed beat is not fatal: the next one may get through
                    logger.warning("heartbeat for %d tracked step(s) failed", len(ids), exc_info=True)


class _Claims:
    """The tracked steps this process claimed, by Celery task id."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.by_id: dict[str, door.Task] = {}
        self.heart: _Heart | None = None
        self.lock = threading.Lock()

    def hold(self, celery_id: str, task: door.Task) -> None:
        with self.lock:
            if self.heart is None:
                self.heart = _Heart()
            heart = self.heart
            self.by_id[celery_id] = task
        with heart.lock:
            heart.held.add(task.id)

    def drop(self, celery_id: str | None) -> door.Task | None:
        with self.lock:
            task = self.by_id.pop(celery_id, None) if celery_id else None
            heart = self.heart
        if task is not None and heart is not None:
            with heart.lock:
                heart.held.discard(task.id)
        return task


_claims = _Claims()
os.register_at_fork(after_in_child=_claims.reset)


# -- the receivers ------------------------------------------------------------------------------------------------


def _on_publish(sender: Any = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    headers = headers or {}
    celery_id = headers.get("id")
    if not isinstance(celery_id, str) or headers.get("retries") or parse_tracked_id(celery_id) is not None:
        return  # a canvas's step is queued by its graph, a retry by task_retry
    task = current_app.tasks.get(sender) if isinstance(sender, str) else None
    sla = _sla_of(task)
    if sla is None:
        return
    try:
        definition = self_tracked_definition(str(sender), sla)
        ensure_saved(definition)
        start(definition.id, {CELERY_ID: celery_id}, idempotency_key=_KEY + celery_id)
    except Exception:
        logger.exception("cannot track task %s (%s)", celery_id, sender)


def _running(instance_id: str) -> bool:
    with database().reader.connect() as conn:
        status = conn.scalar(select(instances.c.status).where(instances.c.id == instance_id))
    return status == InstanceStatus.RUNNING


def _on_prerun(task_id: Any = None, task: Any = None, **_: Any) -> None:
    try:
        where = _where(task_id, task)
        if where is None:
            return
        instance_id, index = where
        worker_id = door.default_worker_id()
        deadline = time.monotonic() + QUEUED_WAIT
        claimed = door.claim_step(instance_id, index, worker_id)
        while claimed is None and time.monotonic() < deadline and _running(instance_id):
            time.sleep(0.05)  # the step before it is being recorded done
            claimed = door.claim_step(instance_id, index, worker_id)
        if claimed is None:
            logger.info("tracked task %s: its step is not queued (cancelled, or delivered twice); not recorded",
                        task_id)
            return
        _claims.hold(str(task_id), claimed)
    except Exception:
        logger.exception("cannot record the start of tracked task %s", task_id)


def _ended(celery_id: Any, what: str, end: Any) -> None:
    claimed = _claims.drop(celery_id if isinstance(celery_id, str) else None)
    if claimed is None:
        return
    try:
        end(claimed)
    except OmsError as exc:  # the instance ended first (a member failed, cancelled), or the lease lapsed
        logger.info("tracked task %s: %s not recorded: %s", celery_id, what, exc)
    except Exception:
        logger.exception("cannot record the %s of tracked task %s", what, celery_id)


def _on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    celery_id = getattr(getattr(sender, "request", None), "id", None)
    _ended(celery_id, "success", lambda claimed: door.complete(claimed, stored_result(result)))


def _reason(exception: Any) -> str:
    return storable_reason(f"{type(exception).__name__}: {exception}")


def _on_failure(task_id: Any = None, exception: Any = None, **_: Any) -> None:
    _ended(task_id, "failure", lambda claimed: door.fail(claimed, _reason(exception), retry=False))


def _on_retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    _ended(getattr(request, "id", None), "retry",
           lambda claimed: door.fail(claimed, storable_reason(f"retried: {reason}"), retry=True))


def _on_revoked(request: Any = None, sender: Any = None, **_: Any) -> None:
    celery_id = getattr(request, "id", None)
    _claims.drop(celery_id)
    try:
        where = _where(celery_id, sender)
        if where is not None:
            control.cancel_workflow(where[0], "revoked")
    except OmsError as exc:
        logger.info("tracked task %s: revoke not recorded: %s", celery_id, exc)
    except Exception:
        logger.exception("cannot record the revoke of tracked task %s", celery_id)


def connect() -> None:
    """Connect the receivers (importing :mod:`oms` does, in every process that publishes or runs tasks)."""
    before_task_publish.connect(_on_publish, weak=False, dispatch_uid="oms.track.publish")
    task_prerun.connect(_on_prerun, weak=False, dispatch_uid="oms.track.prerun")
    task_success.connect(_on_success, weak=False, dispatch_uid="oms.track.success")
    task_failure.connect(_on_failure, weak=False, dispatch_uid="oms.track.failure")
    task_retry.connect(_on_retry, weak=False, dispatch_uid="oms.track.retry")
    task_revoked.connect(_on_revoked, weak=False, dispatch_uid="oms.track.revoked")
