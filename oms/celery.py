"""The Celery app of the engine: ``celery -A oms worker -Q <topics> -I <handler modules>``."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from .bootsteps import CompactTimers
from .db import dispose_all

app = Celery("oms", include=["oms.tasks"])
app.config_from_object(os.environ.get("CELERY_CONFIG_MODULE", "celeryconfig"))
app.steps["worker"].add(CompactTimers)


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """A forked pool process must not share its parent's database connections."""
    dispose_all()
