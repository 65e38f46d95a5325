"""The Celery app of the engine: ``celery -A oms worker -Q <topics> -I <handler modules>``."""

from __future__ import annotations

import os
import warnings
from typing import Any

from celery import Celery
from celery.exceptions import CPendingDeprecationWarning
from celery.signals import celeryd_after_setup

from . import forks, startup
from .bootsteps import CompactTimers, WatchScans

app = Celery("oms", include=["oms.ops.tasks"])
app.config_from_object(os.environ.get("CELERY_CONFIG_MODULE", "celeryconfig"))
app.steps["worker"].add(CompactTimers)
app.steps["worker"].add(WatchScans)
startup.connect()  # workers and beats refuse to start on a schema that is not this code's

# A forked child (a prefork pool process, a program's own fork) gets none of its
# parent's connections: ``oms.db`` drops the database pools, this the broker's.
forks.drop_broker_pools_in_children(app)


def _quiet_the_cancel_default(**_: Any) -> None:
    """Drop Celery's warning, at every lost connection, that its default will become True.

    celeryconfig sets ``worker_cancel_long_running_tasks_on_connection_loss = False``
    on purpose: a broker blip must not kill handlers (the database drops the message
    delivered again). Added after the worker's logging setup, which sets Celery's
    warnings to "always".
    """
    warnings.filterwarnings("ignore", message=r"(?s).*worker_cancel_long_running_tasks_on_connection_loss",
                            category=CPendingDeprecationWarning)


celeryd_after_setup.connect(_quiet_the_cancel_default, weak=False)
