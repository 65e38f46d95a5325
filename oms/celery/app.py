"""The Celery app the engine runs on: its own (``celery -A oms``), or a shop's after :func:`oms.attach`.

Everything that publishes, consumes or registers a task asks :func:`current` for
the app, never imports one: a project attached to its own app gets one fleet, one
broker and one beat, and the engine's app stays unused.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.exceptions import CPendingDeprecationWarning
from celery.signals import celeryd_after_setup

from . import forks, startup
from .bootsteps import CompactTimers, WatchScans

#: The options of every task the engine registers (its upkeep, each topic's handler, task steps): JSON, acked
#: after the outcome is stored, redelivered when the worker dies. Set on the tasks, so that attaching to a
#: shop's app changes none of the shop's own tasks.
ENGINE_TASK_OPTIONS: dict[str, Any] = {
    "serializer": "json",
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "typing": False,
}

app = Celery("oms", include=["oms.ops.tasks", "act.tasks"])
app.config_from_object(os.environ.get("CELERY_CONFIG_MODULE", "celeryconfig"))

_current: Celery = app
#: Every task the engine registered, by name: registered again on an app attached later.
_engine_tasks: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


def current() -> Celery:
    """The app the engine publishes on: the attached one, else its own."""
    return _current


def engine_task(name: str, fun: Callable[..., Any], **options: Any) -> Any:
    """Register ``fun`` as the engine's task ``name`` on the current app, and on any app attached later."""
    options = {**ENGINE_TASK_OPTIONS, **options}
    _engine_tasks[name] = (fun, options)
    return _current.task(name=name, **options)(fun)


def prepare(celery_app: Celery) -> None:
    """Give ``celery_app`` the engine's bootsteps and fork hook (its own app, or a shop's being attached)."""
    celery_app.steps["worker"].add(CompactTimers)
    celery_app.steps["worker"].add(WatchScans)
    # A forked child (a prefork pool process, a program's own fork) gets none of its
    # parent's connections: ``oms.db`` drops the database pools, this the broker's.
    forks.drop_broker_pools_in_children(celery_app)


def use(celery_app: Celery) -> None:
    """Make ``celery_app`` the engine's app (see :func:`oms.attach`): every engine task is registered on it."""
    global _current
    if celery_app is _current:
        return
    prepare(celery_app)
    for name, (fun, options) in _engine_tasks.items():
        celery_app.task(name=name, **options)(fun)
    _current = celery_app


prepare(app)
startup.connect(current)  # workers and beats refuse to start on a schema that is not this code's


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
