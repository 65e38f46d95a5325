"""A shop's own Celery app with four no-op tasks and the engine attached: ``celery -A benchmarks.shop_noop``.

The canvas benchmark (``benchmarks/canvas.py``) runs these tasks as plain chains
(untracked, tracked with :func:`oms.track`, or with a SQL result backend) and as
``"task"`` steps of a workflow, all on this one app, so every side pays the same
Celery and the same attached engine. Configured from the environment, as a shop's
``proj/celery.py`` would be:

- ``SHOP_BROKER_URL``: the broker (default ``redis://127.0.0.1:6379/9``);
- ``SHOP_RESULT_BACKEND``: a result backend, e.g. ``db+postgresql+psycopg://…`` (default none);
- ``SHOP_TRACK_STARTED=1``: ``task_track_started=True`` (a STARTED row before each task runs);
- ``OMS_DATABASE_URL``: the engine's database (the benchmark's scratch PostgreSQL database).

Each task has its own queue (``task_routes``), as each topic of the engine's own
benchmark workflow has. The last task ``INCR``\\ s a Redis counter the benchmark polls.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.canvas import Signature, chain
from celery.signals import worker_ready

import oms

DEFAULT_BROKER = "redis://127.0.0.1:6379/9"
QUEUES = ("shopbench_1", "shopbench_2", "shopbench_3", "shopbench_4")
TASK_NAMES = ("shopbench.noop1", "shopbench.noop2", "shopbench.noop3", "shopbench.noop4")
#: Redis key counting finished chains (in the broker's database unless ``OMS_BENCH_COUNTER_URL``).
COUNTER_KEY = "oms_bench:shop_done"

app = Celery("shopbench")
app.conf.update(
    broker_url=os.environ.get("SHOP_BROKER_URL") or DEFAULT_BROKER,
    broker_connection_retry_on_startup=True,
    # the engine refuses a step that may hold its message past the Redis visibility timeout (kombu's default 1 h)
    broker_transport_options={"visibility_timeout": 7 * 24 * 3600},
    task_routes={name: {"queue": queue} for name, queue in zip(TASK_NAMES, QUEUES, strict=True)},
)


def configure(result_backend: str | None, track_started: bool) -> None:
    """Set the result backend and ``task_track_started``: at import from the environment, and again by the
    benchmark's own process before it publishes for a mode (its workers are started with the environment)."""
    app.conf.result_backend = result_backend or None
    app.conf.task_track_started = track_started
    # Celery makes its backend once, on first use; a mode that changes it starts from a fresh one
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)


configure(os.environ.get("SHOP_RESULT_BACKEND"), os.environ.get("SHOP_TRACK_STARTED") == "1")
oms.attach(app)

_client: redis.Redis | None = None


def counter_client() -> redis.Redis:
    """One Redis client per process, made on first use (after the pool has forked)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("OMS_BENCH_COUNTER_URL") or app.conf.broker_url)
    return _client


@app.task(name=TASK_NAMES[0])  # type: ignore[untyped-decorator]
def noop1(n: int = 0) -> None:
    return None


@app.task(name=TASK_NAMES[1])  # type: ignore[untyped-decorator]
def noop2(n: int = 0) -> None:
    return None


@app.task(name=TASK_NAMES[2])  # type: ignore[untyped-decorator]
def noop3(n: int = 0) -> None:
    return None


@app.task(name=TASK_NAMES[3])  # type: ignore[untyped-decorator]
def noop4(n: int = 0) -> None:
    counter_client().incr(COUNTER_KEY)


def build_chain(n: int) -> Signature:
    """The four tasks as a chain of immutable signatures, each given ``n``."""
    return chain(noop1.si(n=n), noop2.si(n=n), noop3.si(n=n), noop4.si(n=n))


@worker_ready.connect  # type: ignore[untyped-decorator]
def _mark_ready(**_: Any) -> None:
    """Tell the benchmark the worker consumes (it runs the worker at log level WARNING)."""
    path = os.environ.get("OMS_BENCH_READY_FILE")
    if path:
        Path(path).write_text(str(os.getpid()))
