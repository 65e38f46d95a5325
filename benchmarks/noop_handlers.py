"""No-op push handlers for the throughput benchmark: ``-I benchmarks.noop_handlers``.

Four topics, one per step of the benchmark workflow; every handler succeeds at once
without a result, so what the benchmark measures is the engine and Celery, not work.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery.signals import worker_process_init, worker_ready

from act import Task, subscribe
from oms.engine import door

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


#: CPU seconds this process spent inside the door's claim and complete (psycopg included).
_door_cpu = {"seconds": 0.0, "calls": 0}


def _accounted(call: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.thread_time()
        try:
            return call(*args, **kwargs)
        finally:
            _door_cpu["seconds"] += time.thread_time() - began
            _door_cpu["calls"] += 1

    return timed


@worker_process_init.connect
def _account_door_cpu(**_: Any) -> None:
    """With ``OMS_BENCH_CPU_DIR``, each pool child writes its door CPU there every 0.25 s (the benchmark's split)."""
    directory = os.environ.get("OMS_BENCH_CPU_DIR")
    if not directory:
        return
    door.claim_step = _accounted(door.claim_step)  # type: ignore[method-assign]
    door.complete = _accounted(door.complete)  # type: ignore[method-assign]
    path = Path(directory) / f"{os.getpid()}.json"

    def flush() -> None:
        while True:
            time.sleep(0.25)
            path.write_text(json.dumps(_door_cpu))

    threading.Thread(target=flush, daemon=True).start()
