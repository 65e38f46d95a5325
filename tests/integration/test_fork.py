"""Fork safety (issue 12, defect 11): a program that starts instances, then forks pull workers.

The parent uses every connection the package holds before it forks: the database
pools (the ORM's and, on PostgreSQL, the autocommit pool with its prepared
statements), the Celery app's producer pool (its starts publish through it) and the
pull worker's broker connection (it waits on a topic's queue, then fetches and
completes a step of its own). Four children then finish 200 steps, made either by
``multiprocessing``'s ``fork`` start method or by a bare ``os.fork()`` as gunicorn
``--preload`` makes its workers (no ``multiprocessing`` after-fork hooks run then).
Children sharing the parent's sockets hang, raise psycopg protocol errors
(``DuplicatePreparedStatement``, rows of another statement) or ``StaleDataError``,
or interleave frames on one AMQP connection.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import oms.store.db
from act import complete_task, fetch_task
from oms import Workflow, app, get_instance, start_workflow
from oms.store.db import database, transaction
from oms.store.tables import EventRow

from ..conftest import Backend, _configure
from ..invariants import assert_consistent
from ..services import RABBITMQ_URL

pytestmark = pytest.mark.integration

CHILDREN, INSTANCES = 4, 100  # two steps each: 200 steps
#: Seconds a child may take; one that has not reported by then hung, and fails the test.
JOIN_TIMEOUT = 120.0
TWO_STEPS = {"id": "forked", "steps": [{"id": "first", "topic": "forked", "sla": "10m"},
                                       {"id": "second", "topic": "forked", "sla": "10m"}]}


def _pull(results: Queue[Any]) -> None:
    """A forked child's pull loop: fetch and complete until the topic stays empty; report what happened."""
    done = 0
    try:
        while (task := fetch_task("forked", max_wait="3s")) is not None:
            complete_task(task.id, {"by": os.getpid()})
            done += 1
        results.put((os.getpid(), done, None))
    except BaseException:
        results.put((os.getpid(), done, traceback.format_exc()))
    results.close()
    results.join_thread()


class Forked:
    """A child made by a bare ``os.fork()``, as gunicorn ``--preload`` makes its workers."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.exitcode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                target(*args)
                code = 0
            finally:
                os._exit(code)

    def start(self) -> None:
        pass

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.exitcode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exitcode = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                return
            else:
                time.sleep(0.05)

    def is_alive(self) -> bool:
        return self.exitcode is None

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)


def _use_every_connection() -> None:
    """What a program does before it forks: waits on a topic, starts (publishing), fetches and completes."""
    Workflow(id="warmup", steps=[{"id": "warmup_step", "sla": "1m"}]).save()
    assert fetch_task("warmup_step", max_wait="0.2s") is None  # the pull worker's broker connection
    own = start_workflow("warmup", payload={})
    task = fetch_task("warmup_step", max_wait="10s")
    assert task is not None and task.instance_id == own
    complete_task(task.id)
    assert get_instance(own).status == "done"


def _parent_broker_answers() -> None:
    """One round trip on the parent's own pooled broker connection (no reconnection hides a dead one)."""
    with app.pool.acquire(block=True) as connection:
        assert connection.connected
        app.amqp.queues["forked"].bind(connection.default_channel).declare()


def _fork_pull_workers(how: str) -> None:
    _use_every_connection()
    Workflow(**TWO_STEPS).save()
    ids = [start_workflow("forked", payload={"n": n}) for n in range(INSTANCES)]

    context = multiprocessing.get_context("fork")
    results: Queue[Any] = context.Queue()
    children: list[Any] = [context.Process(target=_pull, args=(results,), daemon=True) if how == "multiprocessing"
                           else Forked(_pull, results) for _ in range(CHILDREN)]
    for child in children:
        child.start()
    reports = []
    deadline = time.monotonic() + JOIN_TIMEOUT
    for _ in children:  # a report first: a child cannot exit while its report is unread
        try:
            reports.append(results.get(timeout=max(deadline - time.monotonic(), 0.1)))
        except Exception:
            break
    hung = []
    for child in children:
        child.join(timeout=10)
        if child.is_alive():
            hung.append(child.pid)
            child.kill()
            child.join(10)
    assert not hung, f"{len(hung)} of {CHILDREN} forked pull worker(s) hung; reports: {reports}"
    errors = [error for _, _, error in reports if error]
    assert not errors, "a forked pull worker raised:\n" + "\n".join(errors)
    assert [child.exitcode for child in children] == [0] * CHILDREN
    assert sum(done for _, done, _ in reports) == 2 * INSTANCES, reports
    assert sum(done > 0 for _, done, _ in reports) >= 2, reports  # the work was shared

    assert_consistent(ids)
    with transaction() as session:
        kinds = Counter(session.scalars(select(EventRow.kind).where(EventRow.instance_id.in_(ids))))
    assert kinds["task.done"] == 2 * INSTANCES and kinds["workflow.done"] == INSTANCES

    # The children closed none of the parent's connections: it waits, starts, fetches and completes as before.
    _parent_broker_answers()
    _use_every_connection()


@pytest.mark.parametrize("how", ["multiprocessing", "os.fork"])
def test_four_forked_pull_workers_finish_200_steps(backend: Backend, how: str) -> None:
    _fork_pull_workers(how)


@pytest.mark.parametrize("how", ["multiprocessing", "os.fork"])
def test_four_forked_pull_workers_finish_200_steps_on_rabbitmq(postgres_backend: Backend, tmp_path: Path,
                                                               how: str) -> None:
    """An AMQP connection is one stream of frames: shared with a child, it is corrupted, not merely busy."""
    _configure("rabbitmq", postgres_backend.database_url, RABBITMQ_URL, tmp_path)
    _fork_pull_workers(how)


def test_a_child_forked_while_a_thread_opens_a_database_can_open_it(backend: Backend) -> None:
    """A lock held by a thread the child does not have is never released there: it is made anew."""
    oms.store.db.dispose_all()
    opened = threading.Event()
    release = threading.Event()

    def opening() -> None:  # a thread in the middle of ``database()``: connecting, checking the schema
        with oms.store.db._lock:
            opened.set()
            release.wait(10)

    thread = threading.Thread(target=opening)
    thread.start()
    opened.wait(10)
    try:
        child = Forked(lambda: database().dispose())
        child.join(timeout=20)
        if child.is_alive():
            child.kill()
            child.join(5)
            pytest.fail("the forked child waited forever for the database lock of a thread it does not have")
    finally:
        release.set()
        thread.join()
    assert child.exitcode == 0
