"""Heartbeats of a push worker process: keep the leases of the steps it is running.

A worker process that dies (SIGKILL, out of memory, power loss) stops beating,
its claims lapse after ``OMS_WORKER_LEASE`` seconds, and the SLA scanner offers
the steps again: recovery no longer waits for the broker's visibility timeout.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from oms.engine import door

logger = logging.getLogger(__name__)


class _Heart:
    def __init__(self) -> None:
        self.held: set[str] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="oms-heartbeat", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # time-limit signals belong to the thread running the handler, never to this one
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGALRM})
        interval = door.heartbeat_interval()
        while True:
            threading.Event().wait(interval)
            with self.lock:
                ids = list(self.held)
            if not ids:
                continue
            try:
                door.heartbeat(ids)
            except Exception:  # a missed beat is not fatal: the next one may get through
                logger.warning("heartbeat for %d step(s) failed", len(ids), exc_info=True)


_heart: _Heart | None = None
_heart_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """The parent's heart beats in a thread the child does not have, and may have held the lock."""
    global _heart, _heart_lock
    _heart, _heart_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def beating(*task_ids: str) -> Iterator[None]:
    """Keep the claims of ``task_ids`` alive while the block runs."""
    global _heart
    with _heart_lock:
        if _heart is None:
            _heart = _Heart()
        heart = _heart
    with heart.lock:
        heart.held.update(task_ids)
    try:
        yield
    finally:
        with heart.lock:
            heart.held.difference_update(task_ids)
