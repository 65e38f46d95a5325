"""Worker bootsteps: keep a long-running Celery worker's memory flat; warn while no SLA scan runs."""

from __future__ import annotations

import heapq
import logging
from typing import Any, ClassVar

from celery import bootsteps

from ..settings import get_settings
from .watch import ScanWatch

logger = logging.getLogger(__name__)


def compact(timer: Any) -> int:
    """Drop cancelled entries from a kombu timer's heap; return how many were dropped.

    The prefork pool arms a timer for each task's soft and hard time limit and
    cancels it when the task ends, but a cancelled entry stays in the heap until
    its deadline. Every step carries its SLA as its time limit, so a worker would
    hold one entry per step for as long as the SLA (48 h for the EPA inspector).
    """
    queue = timer._queue
    live = [entry for entry in queue if not entry.entry.canceled]
    dropped = len(queue) - len(live)
    if dropped:
        queue[:] = live
        heapq.heapify(queue)
        logger.info("timer compaction dropped %d cancelled time-limit timers, %d left", dropped, len(live))
    return dropped


class CompactTimers(bootsteps.StartStopStep):  # type: ignore[misc]
    """Compact the event loop's timers every ``OMS_TIMER_COMPACT_INTERVAL`` seconds."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Hub"}

    def start(self, worker: Any) -> None:
        hub = getattr(worker, "hub", None)
        if hub is not None:  # only the event-loop pools (prefork) have one
            hub.call_repeatedly(get_settings().timer_compact_interval, compact, hub.timer)


class WatchScans(bootsteps.StartStopStep):  # type: ignore[misc]
    """Log a WARNING once a minute while no SLA scan has run for three intervals (see :mod:`oms.celery.watch`)."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Pool"}

    def start(self, worker: Any) -> None:
        ScanWatch().start_thread()
