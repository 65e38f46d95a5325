"""``oms.attach(app)`` on a shop's app configured Django-style (``CELERY_*`` settings): what it takes from the
app's configuration, what wins over it, what it refuses, and what it leaves alone. No broker is contacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, shared_task
from celery._state import get_current_app

import oms.celery.app
import oms.ops.tasks  # registers the engine's upkeep tasks, as a worker's include does)
import oms.settings
from oms import AttachRefused, attach
from oms.attach import attached
from oms.settings import get_settings

BROKER = "redis://127.0.0.1:6379/9"


@pytest.fixture(autouse=True)
def detached(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test attaches in a clean process state, and leaves the engine on its own app again."""
    monkeypatch.setattr(oms.celery.app, "_current", oms.celery.app.app)
    for name in ("_current", "_from_app", "_app_name"):
        monkeypatch.setattr(oms.settings, name, getattr(oms.settings, name))
    for variable in ("OMS_BROKER_URL", "OMS_DATABASE_URL", "OMS_SLA_SCAN_INTERVAL", "OMS_VISIBILITY_TIMEOUT",
                     "OMS_CELERY_APP"):
        monkeypatch.delenv(variable, raising=False)
    before = get_current_app()
    yield
    before.set_current()


def shop(tmp_path: Path, **settings: Any) -> Celery:
    """A ``proj`` app read from a Django-style settings object with ``namespace="CELERY"``, as in proj/celery.py."""
    django_settings = type("Settings", (), {
        "CELERY_BROKER_URL": BROKER,
        "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_OMS_DATABASE_URL": f"sqlite:///{tmp_path / 'shop.db'}",
        **settings,
    })
    app = Celery("proj", set_as_current=False)
    app.config_from_object(django_settings, namespace="CELERY")
    return app


def test_the_engine_settings_come_from_the_apps_configuration(tmp_path: Path) -> None:
    app = shop(tmp_path, CELERY_OMS_SLA_SCAN_INTERVAL=2.0,
               CELERY_BROKER_TRANSPORT_OPTIONS={"visibility_timeout": 600})
    assert attach(app) is app and attached() is app
    settings = get_settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'shop.db'}"
    assert settings.sla_scan_interval == 2.0
    assert settings.broker_url == BROKER  # the app's broker: no OMS_BROKER_URL needed
    assert settings.visibility_timeout == 600  # what the app's Redis transport does
    assert app.conf.beat_schedule["oms-scan-sla"]["schedule"] == 2.0
    assert app.conf.beat_schedule["oms-scan-sla"]["options"]["queue"] == "oms"
    assert "oms.ops.tasks" in app.conf.include


def test_oms_environment_variables_win_over_the_apps_configuration(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_SLA_SCAN_INTERVAL", "5")
    monkeypatch.setenv("OMS_DATABASE_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    attach(shop(tmp_path, CELERY_OMS_SLA_SCAN_INTERVAL=2.0))
    assert get_settings().sla_scan_interval == 5.0
    assert get_settings().database_url == f"sqlite:///{tmp_path / 'from-env.db'}"
    assert attached() is not None and attached().conf.beat_schedule["oms-scan-sla"]["schedule"] == 5.0


def test_an_oms_broker_url_naming_another_broker_is_refused_in_one_line(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_BROKER_URL", "amqp://guest:secret@elsewhere:5672//")
    with pytest.raises(AttachRefused) as refused:
        attach(shop(tmp_path))
    message = str(refused.value)
    assert "\n" not in message and "OMS_BROKER_URL" in message
    assert "secret" not in message
    assert attached() is None  # the engine stays on its own app


def test_an_oms_broker_url_naming_the_apps_broker_is_accepted(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_BROKER_URL", BROKER)
    app = shop(tmp_path)
    assert attach(app) is app and get_settings().broker_url == BROKER


@pytest.mark.parametrize("setting,value,named", [
    ("CELERY_ACCEPT_CONTENT", ["pickle"], "accept_content"),
    ("CELERY_TASK_CREATE_MISSING_QUEUES", False, "task_create_missing_queues"),
    ("CELERY_TASK_ALWAYS_EAGER", True, "task_always_eager"),
])
def test_an_app_the_engine_cannot_run_on_is_refused_naming_the_setting(tmp_path: Path, setting: str, value: Any,
                                                                       named: str) -> None:
    with pytest.raises(AttachRefused, match=named) as refused:
        attach(shop(tmp_path, **{setting: value}))
    assert "\n" not in str(refused.value)
    assert attached() is None


def test_the_shops_own_tasks_keep_their_options_and_the_engines_get_theirs(tmp_path: Path) -> None:
    app = shop(tmp_path)

    @app.task(name="demoapp.tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    before = {k: app.conf[k] for k in ("task_acks_late", "task_reject_on_worker_lost", "task_serializer",
                                       "task_default_queue", "task_routes", "worker_prefetch_multiplier",
                                       "task_ignore_result")}
    attach(app)
    assert {k: app.conf[k] for k in before} == before
    shop_task = app.tasks["demoapp.tasks.add"]
    assert (shop_task.acks_late, shop_task.ignore_result) == (False, False)
    scan = app.tasks["oms.scan_sla"]
    assert (scan.acks_late, scan.reject_on_worker_lost, scan.serializer) == (True, True, "json")


def test_attaching_a_second_app_is_refused(tmp_path: Path) -> None:
    first = shop(tmp_path)
    attach(first)
    assert attach(first) is first  # again: nothing changes
    with pytest.raises(AttachRefused, match="already attached to app 'proj'"):
        attach(Celery("other", set_as_current=False))


def test_shared_tasks_bind_to_the_attached_app_whatever_was_imported_first(tmp_path: Path) -> None:
    app = shop(tmp_path)
    app.set_current()
    Celery("imported-later")  # as importing a module that creates an app does (oms's own, at import)

    @shared_task(name="demoapp.tasks.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    attach(app)
    assert mul.app is app and "demoapp.tasks.mul" in app.tasks
