"""``@subscribe(topic)``: make a function the push handler of a topic, run by Celery workers."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, NoReturn

from billiard.process import current_process
from celery import Celery
from celery import Task as CeleryTask
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from oms.celery.app import ENGINE_TASK_OPTIONS, current, engine_task
from oms.celery.compiler import task_name
from oms.engine import checks, door
from oms.engine.door import Task
from oms.exceptions import OmsError

from .heartbeat import beating
from .outcome import Returned, failure, interpret

logger = logging.getLogger(__name__)

Handler = Callable[[Task], Any]


@dataclass(frozen=True)
class Subscription:
    """A subscribed handler: still callable as the plain function, plus its Celery task."""

    topic: str
    handler: Handler
    celery_task: CeleryTask

    def __call__(self, task: Task) -> Any:
        return self.handler(task)


def run_step(worker_id: str, handler: Handler, instance_id: str, index: int, item_index: int | None = None,
             items: int = 1, branches: list[int] | None = None) -> Any:
    """Claim step ``index`` of an instance (item ``item_index`` of a mapped step), run ``handler``, record the outcome;
    ``items`` more than one: that many items from ``item_index``, a chunk (:func:`run_chunk`); ``branches``: those
    sibling steps, a chunk of them (:func:`run_branches`).

    Raises ``Ignore`` to stop the Celery chain whenever the next step must not be
    published by this message: a duplicate delivery, a failure, or a retry (which
    publishes its own chain, after its backoff). The message is acknowledged only
    after the outcome is stored: while the database is down, the door keeps retrying.
    """
    if items > 1:
        run_chunk(worker_id, handler, instance_id, index, item_index or 0, items)
    if branches:
        run_branches(worker_id, handler, instance_id, branches)
    with shielded():
        task = door.claim_step(instance_id, index, worker_id, item_index=item_index)
    if task is None:
        logger.info("step %s of %s is not pending (duplicate delivery?); skipped", index, instance_id)
        raise Ignore()
    with beating(task.id):
        outcome = _run(handler, task)
    if outcome is None:
        raise Ignore()
    try:
        with shielded():
            if outcome.pause is not None:
                door.pause(task.id, outcome.pause, worker_id=task.worker_id)
                raise Ignore()  # the step stays open: whoever completes it moves the workflow on
            if outcome.ok:
                door.complete(task, outcome.result, chained=True)
            else:
                door.fail(task, outcome.reason)
    except OmsError as exc:  # e.g. the SLA scanner failed the step, or the instance was cancelled
        logger.warning("outcome of %s not recorded: %s", task.id, exc)
        raise Ignore() from None
    if outcome.ok:
        return outcome.result  # the Celery chain publishes the next step
    raise Ignore()


def run_chunk(worker_id: str, handler: Handler, instance_id: str, index: int, first: int, items: int) -> NoReturn:
    """Run a chunk of a mapped step's items (one message for ``items`` of them from ``first``): claim them in one
    statement, then :func:`_run_claimed`. Always raises ``Ignore``: an item ends no chain (the last one offers what
    follows)."""
    with shielded():
        claimed = door.claim_items(instance_id, index, worker_id, first, items)
    _run_claimed(worker_id, handler, claimed, f"items {first}-{first + items - 1} of step {index} of {instance_id}")


def run_branches(worker_id: str, handler: Handler, instance_id: str, indexes: list[int]) -> NoReturn:
    """Run a chunk of sibling branches (one message for the steps ``indexes``): claim them in one statement, then
    :func:`_run_claimed`. Always raises ``Ignore``: a chunked branch starts no chain (what follows is offered)."""
    with shielded():
        claimed = door.claim_branches(instance_id, indexes, worker_id)
    _run_claimed(worker_id, handler, claimed, f"steps {', '.join(map(str, indexes))} of {instance_id}")


def _run_claimed(worker_id: str, handler: Handler, claimed: list[Task], what: str) -> NoReturn:
    """Run ``handler`` on each claimed task of a chunk in turn, then record the completions in one transaction and the
    failures in another. Those not pending were left out of the claim (a duplicate delivery, or one already
    re-offered alone). Always raises ``Ignore``."""
    if not claimed:
        logger.info("%s are not pending (duplicate delivery?); skipped", what)
        raise Ignore()
    done: list[tuple[str, Any]] = []
    failed: list[tuple[str, str]] = []
    with beating(*(task.id for task in claimed)):
        for task in claimed:
            outcome = _run(handler, task)
            if outcome is None:
                continue
            if outcome.pause is not None:
                with shielded(), _unrecorded(task):
                    door.pause(task.id, outcome.pause, worker_id=task.worker_id)
            elif outcome.ok:
                done.append((task.id, outcome.result))
            else:
                failed.append((task.id, outcome.reason))
    with shielded():
        recorded = [*door.complete_many(done, worker_id=worker_id), *door.fail_many(failed, worker_id=worker_id)]
    for refused in (outcome for outcome in recorded if not outcome.ok):
        logger.warning("outcome of %s not recorded: %s: %s", refused.task_id, refused.error, refused.detail)
    raise Ignore()


def _run(handler: Handler, task: Task) -> Returned | None:
    """Run ``handler`` on a claimed task: its outcome (a failure for an exception), or ``None`` if its SLA ran out
    and stopped it (the breach recorded)."""
    try:
        with sla_alarm(task):
            return interpret(handler(task))
    except SoftTimeLimitExceeded:
        logger.warning("handler for %s overran the SLA of step %s of %s", task.topic, task.step_id, task.instance_id)
        with shielded(), _unrecorded(task):
            door.breach(task.id, "SLA exceeded: the handler was stopped by its soft time limit")
        return None
    except Exception as exc:  # the handler's failure is the step's failure
        logger.exception("handler for %s failed", task.topic)
        return failure(f"{type(exc).__name__}: {exc}")


@contextmanager
def _unrecorded(task: Task) -> Iterator[None]:
    """Log, not raise, what refuses a transition of ``task`` (the scanner failed it, its instance was cancelled)."""
    try:
        yield
    except OmsError as exc:
        logger.warning("outcome of %s not recorded: %s", task.id, exc)


def in_pool_child() -> bool:
    """In a prefork pool child's main thread, where a signal may interrupt the handler."""
    return threading.current_thread() is threading.main_thread() and current_process().name != "MainProcess"


@contextmanager
def shielded() -> Iterator[None]:
    """Keep time-limit signals out of the engine's own bookkeeping.

    A soft time limit (Celery's SIGUSR1, or our SIGALRM) landing inside a
    transition would roll it back halfway through recording the outcome. Here it
    is held, and dropped: the handler it was meant for has already returned.
    """
    if not in_pool_child():
        yield
        return
    held = {signal.SIGUSR1, signal.SIGALRM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        while signal.sigtimedwait(held, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


@contextmanager
def sla_alarm(task: Task) -> Iterator[None]:
    """In a prefork child, interrupt the handler when the step's SLA runs out.

    Celery's own ``soft_time_limit`` counts the whole SLA from the moment the
    handler starts; this counts what is left of it, since the clock started when the
    step was queued. A step claimed after its SLA ran out (it waited in the queue) is
    not stopped at once, which would fail it without running it: Celery's limit
    alone bounds its run, and the breach is recorded by the scanner. Other pools run
    handlers off the main thread or in the worker's own process, where no signal may
    be used: there the SLA scanner alone holds the SLA.
    """
    if task.expires_at is None or not in_pool_child():
        yield
        return
    left = (task.expires_at - door.utcnow()).total_seconds()
    if left <= 0:  # it waited past its SLA in the queue: the breach is the scanner's; the handler is not to blame
        logger.info("step %s of %s starts %.1fs after its SLA ran out: it runs under its message's time limit",
                    task.step_id, task.instance_id, -left)
        yield
        return
    with alarm(left, SoftTimeLimitExceeded(f"SLA of step {task.step_id} ran out")):
        yield


@contextmanager
def alarm(seconds: float, error: BaseException) -> Iterator[None]:
    """Raise ``error`` in this thread (a prefork child's main thread) after ``seconds``, by SIGALRM."""

    def overrun(signum: int, frame: FrameType | None) -> None:
        raise error

    previous = signal.signal(signal.SIGALRM, overrun)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def subscribe(topic: str, *, app: Celery | None = None) -> Callable[[Handler], Subscription]:
    """Make the decorated function the handler of ``topic``.

    The handler gets a :class:`~act.Task` and returns ``"success"``, ``None`` or a
    JSON object (the step's result) to succeed, ``"fail"`` or raises to fail.
    Workers run it when started on the topic's queue:
    ``celery -A oms worker -Q <topic> -I <module with handlers>``. Its Celery task
    is registered on the engine's app (a shop's, after :func:`oms.attach`, also when
    the handler's module was imported first); ``app=`` registers it on that app only.
    """
    checks.check_topic(topic)

    def decorate(handler: Handler) -> Subscription:
        name = task_name(topic)
        # Celery's task wraps ``execute``, which wraps the handler
        held = getattr(getattr((app or current()).tasks.get(name), "__wrapped__", None), "__wrapped__", None)
        if held not in (None, handler):
            raise ValueError(f"topic {topic!r} already has a handler: {held.__qualname__}")

        def execute(self: CeleryTask, instance_id: str, index: int, item: int | None = None, items: int = 1,
                    branches: list[int] | None = None, **_: Any) -> Any:
            return run_step(f"{self.request.hostname}", handler, instance_id, index, item, items, branches)

        execute.__name__ = handler.__name__
        execute.__doc__ = handler.__doc__
        execute.__wrapped__ = handler  # type: ignore[attr-defined]
        if app is None:
            celery_task = engine_task(name, execute, bind=True)
        else:
            celery_task = app.task(name=name, bind=True, **ENGINE_TASK_OPTIONS)(execute)
        return Subscription(topic, handler, celery_task)

    return decorate
