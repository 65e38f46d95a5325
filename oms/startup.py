"""What a Celery worker or beat of the engine checks as it starts: the database's schema.

A process that finds the schema missing, behind or ahead of its code refuses to
start, with one line naming the command to run (``oms db upgrade``), rather than
failing on its first step. An unreachable database is only logged: workers retry
their transitions while it is down, and a supervisor need not restart them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import signals

from .exceptions import ConfigurationError, SchemaError

logger = logging.getLogger(__name__)


def check_database(**_: Any) -> None:
    """Open the configured database (which checks its schema); exit with one line if the schema is wrong."""
    from .db import database

    try:
        database()
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except ConfigurationError as exc:
        logger.warning("%s; steps wait until it is back", exc)


def connect() -> None:
    """Run :func:`check_database` when a worker or a beat starts."""
    signals.worker_init.connect(check_database, weak=False)
    signals.beat_init.connect(check_database, weak=False)
