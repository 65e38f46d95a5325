"""The Celery app of the engine: ``celery -A oms worker -Q <topics> -I <handler modules>``."""

from __future__ import annotations

import os

from celery import Celery

from . import startup
from .bootsteps import CompactTimers, WatchScans

app = Celery("oms", include=["oms.tasks"])
app.config_from_object(os.environ.get("CELERY_CONFIG_MODULE", "celeryconfig"))
app.steps["worker"].add(CompactTimers)
app.steps["worker"].add(WatchScans)
startup.connect()  # workers and beats refuse to start on a schema that is not this code's

# A forked pool process gets no database connection of its parent's: ``oms.db``
# drops inherited pools in every forked child (``os.register_at_fork``).
