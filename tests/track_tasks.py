"""A shop's plain Celery tasks (``@shared_task``), tracked by ``oms.track`` in tests/integration/test_track.py.

``ignore_result=False`` on each: the oms app ignores results by default, and the tests compare them.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Task, shared_task


@shared_task(ignore_result=False)
def add(x: int, y: int) -> int:
    return x + y


@shared_task(sla="2m", ignore_result=False)
def mul(x: int, y: int) -> int:
    return x * y


@shared_task(ignore_result=False)
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


@shared_task(ignore_result=False)
def boom(*_: Any) -> int:
    raise ValueError("boom")


@shared_task(sla="2s")
def lonely() -> str:
    """Tracked on its own (``sla=``); the test publishes it where no worker listens."""
    return "never"


class _SlowToReport(Task):  # type: ignore[misc]
    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        # runs after the result backend stored the result, before task_success: a kill -9 here loses the record
        time.sleep(60)


@shared_task(base=_SlowToReport, sla="5m", ignore_result=False)
def slow_to_report(x: int) -> int:
    return x * 10


@shared_task(sla="5m", ignore_result=False)
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"
