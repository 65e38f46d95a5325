"""Handlers and tasks of ``fanout.py``: the engine's no-op branches, join and items, and a Celery chord's.

``-I benchmarks.fanout_tasks``; the worker runs with ``CELERY_CONFIG_MODULE=benchmarks.chord_config``,
which adds the Redis result backend a chord needs (the engine's own tasks ignore results).
"""

from __future__ import annotations

import os
from typing import Any

import redis

from act import Task, subscribe
from benchmarks import noop_handlers  # noqa: F401  (its worker_ready hook tells the benchmark the worker is up)
from oms import app

#: Redis keys counting finished chords and finished joins: the benchmark polls both the same way.
CHORD_DONE = "oms_bench:chords_done"
JOIN_DONE = "oms_bench:joins_done"
CHORD_QUEUE = "bench_chord"

_client: redis.Redis | None = None


def counter() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("OMS_BENCH_COUNTER_URL") or app.conf.broker_url)
    return _client


@subscribe("bench_branch")
def branch(task: Task) -> None:
    """A no-op branch (or item): succeeds at once without a result."""
    return None


@subscribe("bench_join")
def join(task: Task) -> None:
    counter().incr(JOIN_DONE)


@app.task(name="bench.chord.noop", ignore_result=False, typing=False)
def chord_noop(index: int) -> None:
    return None


@app.task(name="bench.chord.callback", ignore_result=False, typing=False)
def chord_callback(results: list[Any]) -> None:
    counter().incr(CHORD_DONE)
