"""Plain Celery tasks for the throughput benchmark's baseline: ``-I benchmarks.bare_tasks``.

A chain of four no-op tasks on the engine's own Celery app (so the same celeryconfig:
JSON, ``task_acks_late``, prefetch 1, results ignored), each routed to its own queue,
with the same keyword arguments and time limits as the engine's step messages. There
is no result backend: the last task ``INCR``\\ s a Redis counter that the benchmark polls.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from celery import chain
from celery.canvas import Signature
from celery.signals import worker_ready

from oms import app
from oms.celery.compiler import time_limits

QUEUES = ("bench_bare_1", "bench_bare_2", "bench_bare_3", "bench_bare_4")
TASK_NAMES = tuple(f"bench.bare.{queue}" for queue in QUEUES)
#: Redis key counting finished chains (in the broker's database unless ``OMS_BENCH_COUNTER_URL``).
COUNTER_KEY = "oms_bench:bare_done"
#: Same SLA as the engine benchmark's steps, so the same soft/hard time limits on every message.
SLA = timedelta(hours=1)

_client: redis.Redis | None = None


def counter_client() -> redis.Redis:
    """One Redis client per process, made on first use (after the pool has forked)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("OMS_BENCH_COUNTER_URL") or app.conf.broker_url)
    return _client


def _noop(instance_id: str, workflow: str, step: str, index: int) -> None:
    return None


def _last(instance_id: str, workflow: str, step: str, index: int) -> None:
    counter_client().incr(COUNTER_KEY)


for _name in TASK_NAMES[:-1]:
    app.task(name=_name, ignore_result=True, typing=False)(_noop)
app.task(name=TASK_NAMES[-1], ignore_result=True, typing=False)(_last)


def build_chain(instance_id: str | None = None) -> Signature:
    """The four immutable signatures, shaped like :func:`oms.compiler.step_signature`'s."""
    instance_id = instance_id or f"wf-{uuid.uuid4().hex}"
    soft, hard = time_limits(SLA)
    return chain(
        *(
            app.signature(
                name,
                kwargs={"instance_id": instance_id, "workflow": "bench_bare", "step": queue, "index": index},
                queue=queue,
                immutable=True,
                soft_time_limit=soft,
                time_limit=hard,
            )
            for index, (name, queue) in enumerate(zip(TASK_NAMES, QUEUES))
        )
    )


@worker_ready.connect
def _mark_ready(**_: Any) -> None:
    """Tell the benchmark the worker consumes (it runs the worker at log level WARNING)."""
    path = os.environ.get("OMS_BENCH_READY_FILE")
    if path:
        Path(path).write_text(str(os.getpid()))
