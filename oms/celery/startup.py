"""What a Celery worker or beat of the engine checks as it starts: the database's schema.

A process that finds the schema missing, behind or ahead of its code refuses to
start, with one line naming the command to run (``oms db upgrade``), rather than
failing on its first step. An unreachable database is only logged: workers retry
their transitions while it is down, and a supervisor need not restart them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from billiard.process import current_process
from celery import Celery, signals

from ..exceptions import ConfigurationError, SchemaError
from ..store.db import database

logger = logging.getLogger(__name__)


def check_database(**_: Any) -> None:
    """Open the configured database (which checks its schema); exit with one line if the schema is wrong."""
    try:
        database()
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except ConfigurationError as exc:
        logger.warning("%s; steps wait until it is back", exc)


def check_beat_database(**kwargs: Any) -> None:
    """:func:`check_database` for a standalone beat; a worker's embedded beat (``-B``) was checked by its worker.

    Celery forks the embedded beat and closes every inherited file descriptor, the
    worker's SQLite connections among them, while SQLite's in-process state still
    refers to them: reopening the file there fails after ten seconds with
    "locking protocol", logged as an unreachable database.
    """
    if current_process().name == "MainProcess":
        check_database(**kwargs)


def connect(engine_app: Callable[[], Celery]) -> None:
    """Run :func:`check_database` when a worker or a (standalone) beat of ``engine_app()`` starts.

    Only of that app: a project that imports ``oms`` without attaching it
    (``celery -A proj worker``) starts as it did, touching no engine database.
    """

    def worker_init(sender: Any = None, **kwargs: Any) -> None:
        if getattr(sender, "app", None) is engine_app():
            check_database(**kwargs)

    def beat_init(sender: Any = None, **kwargs: Any) -> None:
        if getattr(sender, "app", None) is engine_app():
            check_beat_database(**kwargs)

    signals.worker_init.connect(worker_init, weak=False)
    signals.beat_init.connect(beat_init, weak=False)
