"""No-op push handlers for the throughput benchmark: ``-I benchmarks.noop_handlers``.

Four topics, one per step of the benchmark workflow; every handler succeeds at once
without a result, so what the benchmark measures is the engine and Celery, not work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery.signals import worker_ready

from act import Task, subscribe

#: The benchmark workflow's steps; each step's topic is its id, and so is its queue.
TOPICS = ("bench_noop_1", "bench_noop_2", "bench_noop_3", "bench_noop_4")


def noop(task: Task) -> None:
    """Succeed without a result."""
    return None


for _topic in TOPICS:
    subscribe(_topic)(noop)


@worker_ready.connect
def _mark_ready(**_: Any) -> None:
    """Tell the benchmark the worker consumes (it runs the worker at log level WARNING)."""
    path = os.environ.get("OMS_BENCH_READY_FILE")
    if path:
        Path(path).write_text(str(os.getpid()))
