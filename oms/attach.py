"""``oms.attach(app)``: run the engine on a shop's own Celery app, one fleet, one broker, one beat.

After ``oms.attach(app)`` in ``proj/celery.py``, the engine's tasks (the SLA scan,
the reconciler, the prune, each topic's ``act.<topic>`` handler, task steps) are
registered on ``app``, published on its broker, and sent by its beat;
``celery -A proj worker -Q celery,oms,<topics>`` serves the shop's tasks and the
engine's steps. The engine sets what it needs on its own tasks (JSON, late acks,
redelivery when a worker dies) and never on the app: the shop's tasks run as before.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery
from celery.app.utils import find_app
from kombu.utils.url import maybe_sanitize_url

from .celery.app import app as own_app
from .celery.app import current, use
from .celery.config import beat_schedule
from .exceptions import OmsError
from .model.limits import REDIS_SCHEMES
from .settings import OmsSettings, set_app_settings, set_settings
from .store.db import dispose_all

__all__ = ["APP_VARIABLE", "AttachRefused", "attach", "attached", "load", "settings_of"]

#: Names the attached app for the ``oms`` command and the processes it starts (``oms --app proj``).
APP_VARIABLE = "OMS_CELERY_APP"
#: Where the ``oms`` command's app name came from, as its errors say it.
_GIVEN = f"oms --app, or {APP_VARIABLE}"

#: The modules that register the engine's tasks: its upkeep, and the task that runs a shop's task as a step.
ENGINE_MODULES = ("oms.ops.tasks", "act.tasks")

#: Kombu's Redis transport redelivers an unacknowledged message after this many seconds unless told otherwise.
_KOMBU_VISIBILITY_TIMEOUT = 3600


class AttachRefused(OmsError):
    """The app cannot carry the engine as configured; the message names the setting to change."""


def attached() -> Celery | None:
    """The shop's app the engine runs on, or ``None`` (the engine's own app, ``celery -A oms``)."""
    app = current()
    return None if app is own_app else app


def settings_of(app: Celery) -> dict[str, Any]:
    """The engine settings written in the app's configuration: ``oms_database_url`` (``CELERY_OMS_DATABASE_URL``
    in Django settings with ``namespace="CELERY"``)."""
    given: dict[str, Any] = {}
    for name in OmsSettings.model_fields:
        value = app.conf.get(f"oms_{name}", app.conf.get(f"OMS_{name.upper()}"))
        if value is not None:
            given[name] = value
    return given


def _broker_url(app: Celery) -> str:
    """The app's broker URL as Celery will use it (its default is a local RabbitMQ)."""
    return str(app.conf.broker_url or app.conf.broker_write_url or "amqp://guest:guest@localhost:5672//")


def _refusal(app: Celery, settings: dict[str, Any]) -> str | None:
    """Why the app cannot carry the engine, naming the setting; ``None`` when it can."""
    broker = _broker_url(app)
    mine = os.environ.get("OMS_BROKER_URL") or settings.get("broker_url")
    if mine and mine.rstrip("/") != broker.rstrip("/"):
        return (f"OMS_BROKER_URL ({maybe_sanitize_url(mine)}) differs from the broker of app {app.main!r} "
                f"({maybe_sanitize_url(broker)}): an attached engine publishes on the app's broker; unset it")
    if "json" not in {c.split("/")[-1] for c in app.conf.accept_content or ()}:
        return (f"app {app.main!r} does not accept JSON messages (accept_content={list(app.conf.accept_content)}): "
                "the engine's messages are JSON; add 'json' to accept_content")
    if not app.conf.task_create_missing_queues:
        return (f"app {app.main!r} sets task_create_missing_queues=False: each topic is a queue of its own, "
                "made when a step is first offered on it; set it to True")
    if app.conf.task_always_eager:
        return (f"app {app.main!r} sets task_always_eager=True: the engine's steps must run on workers, after "
                "their rows are committed; unset it")
    return None


def attach(app: Celery) -> Celery:
    """Run the engine on ``app``: its tasks registered there, its beat entries in the app's ``beat_schedule``.

    Call it in ``proj/celery.py`` once the app is configured. Engine settings may be
    written in the app's configuration (``oms_database_url``, or
    ``CELERY_OMS_DATABASE_URL`` in Django settings); an ``OMS_*`` environment
    variable wins over them. The broker is the app's: ``OMS_BROKER_URL`` is not
    needed, and refused when it names another.

    Raises:
        AttachRefused: a setting of the app the engine cannot run with (named in the message).
    """
    held = attached()
    if held is app:
        return app
    if held is not None:
        raise AttachRefused(f"the engine is already attached to app {held.main!r}: one app per process")
    given = settings_of(app)
    problem = _refusal(app, given)
    if problem:
        raise AttachRefused(f"cannot attach to app {app.main!r}: {problem}")
    given["broker_url"] = _broker_url(app)
    settings = set_app_settings(given, app.main or "proj")
    if settings.broker_url.startswith(REDIS_SCHEMES):
        # what the app's transport does, whatever OMS_VISIBILITY_TIMEOUT says: a step that may hold its message
        # longer would be delivered twice, so save() refuses it (oms.model.limits.check_fits_broker)
        options = app.conf.broker_transport_options or {}
        settings = set_settings(visibility_timeout=int(options.get("visibility_timeout", _KOMBU_VISIBILITY_TIMEOUT)))
    dispose_all()
    app.conf.beat_schedule = {**beat_schedule(settings), **(app.conf.beat_schedule or {})}
    import_engine_tasks(app)
    use(app)
    app.set_current()  # importing oms made its own app Celery's current one: @shared_task binds to this one
    return app


def import_engine_tasks(app: Celery) -> None:
    """Have the app's workers import the engine's upkeep tasks and its task step, as they import the app's own
    modules."""
    includes = tuple(app.conf.include or ())
    app.conf.include = (*includes, *(name for name in ENGINE_MODULES if name not in includes))


def load(name: str) -> Celery:
    """Import the shop's app as ``celery -A name`` would (``proj``, ``proj.celery``, ``proj.celery:app``),
    for the ``oms`` command: it must attach the engine itself (``oms.attach(app)`` in its module).

    Raises:
        AttachRefused: the app cannot be imported, or does not attach the engine.
    """
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as celery -A does: the project is found from the working directory
    try:
        app = find_app(name)
    except Exception as exc:  # the shop's module may raise anything while it is imported
        raise AttachRefused(f"cannot load the Celery app {name!r} ({_GIVEN}): {type(exc).__name__}: {exc}") \
            from None
    if not isinstance(app, Celery):
        raise AttachRefused(f"{name!r} ({_GIVEN}) is not a Celery app but a {type(app).__name__}")
    if attached() is not app:
        raise AttachRefused(f"the Celery app {name!r} ({_GIVEN}) does not attach the engine: add "
                            "`import oms; oms.attach(app)` where the app is configured (proj/celery.py)")
    os.environ[APP_VARIABLE] = name  # the processes oms worker/beat/demo start use it too
    return app
