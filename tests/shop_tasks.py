"""A shop's own Celery tasks, run as workflow steps (``tests/integration/test_task_steps.py``).

Each call of the counted tasks appends a line to the file named by ``counter`` in the
payload: the tests count how often a function really ran.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from celery import Task, shared_task

from oms import app


def _count(counter: str) -> int:
    """Append one line to ``counter``; return how many calls it holds now."""
    with Path(counter).open("a") as out:
        out.write("call\n")
    return len(Path(counter).read_text().splitlines())


@shared_task
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="tests.shop_tasks.mul")
def mul(value: int, y: int) -> int:
    return value * y


@shared_task(autoretry_for=(RuntimeError,), max_retries=2, retry_backoff=False)
def flaky(counter: str, fail_times: int = 2) -> dict[str, Any]:
    """Fails its first ``fail_times`` calls: Celery would retry it itself, the engine does instead."""
    calls = _count(counter)
    if calls <= fail_times:
        raise RuntimeError(f"call {calls} fails")
    return {"calls": calls}


@shared_task(autoretry_for=(RuntimeError,), max_retries=3, retry_backoff=2, retry_backoff_max=30)
def backing_off(counter: str) -> None:
    _count(counter)


@shared_task(autoretry_for=(RuntimeError,), max_retries=None)
def forever(counter: str) -> None:
    _count(counter)


@shared_task(bind=True, max_retries=5)
def bound(self: Task, counter: str) -> dict[str, Any]:
    """Asks Celery to retry itself on its first call; the engine's retry runs it again instead."""
    calls = _count(counter)
    if calls == 1:
        raise self.retry(exc=RuntimeError("first call retries"), countdown=0)
    return {"calls": calls, "task_id_seen": self.request.id is None, "called_directly": self.request.called_directly}


@shared_task(soft_time_limit=1)
def slow(counter: str, seconds: float) -> None:
    """Sleeps past its own soft time limit (1 s) unless ``seconds`` is short."""
    _count(counter)
    time.sleep(seconds)


@shared_task
def everything(payload: dict[str, Any], results: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return {"payload_keys": sorted(payload), "result_steps": sorted(results), "merged": sorted(kwargs)}


@shared_task(soft_time_limit=30)
def patient(counter: str, seconds: float) -> None:
    """Its own soft time limit (30 s) is longer than the SLA of the step the tests give it."""
    _count(counter)
    time.sleep(seconds)
