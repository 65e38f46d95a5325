"""A worker's warning while no SLA scan runs: every Celery worker (a bootstep) and every pull worker log it.

Without beat nothing sends the scan: no breach is recorded or escalated and a dead
worker's step is never offered again, silently. So each worker process looks at
the newest scan (:func:`oms.store.runs.missing_scan`) and logs a WARNING at most
once a minute while none has run for three scan intervals.
"""

from __future__ import annotations

import logging
import threading
import time

from ..settings import get_settings
from ..store.runs import MISSED_SCANS, WARN_EVERY, missing_scan

logger = logging.getLogger(__name__)


class ScanWatch:
    """Logs a WARNING at most once a minute while no SLA scan runs; quiet for three intervals after it starts."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.next_check = self.started + MISSED_SCANS * get_settings().sla_scan_interval
        self.lock = threading.Lock()

    def check(self) -> str | None:
        """Look at the newest scan, if a check is due; log and return the warning when none ran."""
        with self.lock:
            if time.monotonic() < self.next_check:
                return None
            self.next_check = time.monotonic() + WARN_EVERY
        try:
            warning = missing_scan()
        except Exception as exc:  # the database is down: the transitions will say so
            logger.debug("cannot read the SLA scans: %s", exc)
            return None
        if warning:
            logger.warning("%s", warning)
        return warning

    def seconds_to_next(self) -> float:
        return max(self.next_check - time.monotonic(), 0.0)

    def run_forever(self) -> None:
        """A worker's watch thread: check whenever due."""
        while True:
            time.sleep(self.seconds_to_next() + 0.01)
            self.check()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="oms-scan-watch", daemon=True)
        thread.start()
        return thread
