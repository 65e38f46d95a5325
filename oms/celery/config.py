"""Settings that reach Celery (the broker, from :class:`~oms.settings.OmsSettings`), and switching them at run time."""

from __future__ import annotations

from typing import Any

import kombu.pools

from ..model.limits import REDIS_SCHEMES
from ..settings import ENGINE_QUEUE, OmsSettings, set_settings
from ..store.db import dispose_all
from .app import app, current


def broker_settings(settings: OmsSettings) -> dict[str, Any]:
    """``broker_url`` and ``broker_transport_options`` for Celery."""
    url = settings.broker_url
    options: dict[str, Any] = {}
    transport = None  # from the URL's scheme
    if url.startswith("filesystem://"):
        transport = "oms.celery.fsbroker:Transport"  # kombu's, with atomic writes
        folder = settings.broker_folder.resolve()
        for sub in ("queue", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        url = "filesystem://localhost//"
        options = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.05,
        }
    elif url.startswith(REDIS_SCHEMES):
        # An unacknowledged message (acks_late) is redelivered after this long: it
        # must outlast every step, or a long step would run twice. See check_fits_broker.
        options = {"visibility_timeout": settings.visibility_timeout}
    return {"broker_url": url, "broker_transport": transport, "broker_transport_options": options}


def beat_schedule(settings: OmsSettings) -> dict[str, dict[str, Any]]:
    """The engine's upkeep, for beat: the SLA scan, the reconciler, the notices' sweep, the SLA report's rollups, and
    the prune when ``OMS_RETENTION`` is set.

    Sent to the ``oms`` queue, each expiring after its interval. Any number of beats
    may run: each due row is taken by one scan only.
    """
    reconcile_every = max(settings.reconcile_after / 3, 1.0)
    every = {
        # SLA lights and escalations; lapsed claims of dead workers offered again
        "oms-scan-sla": ("oms.scan_sla", settings.sla_scan_interval),
        # steps whose message the broker lost, published again
        "oms-reconcile": ("oms.reconcile", reconcile_every),
        # notices due in the outbox (oms.notify), sent to their webhooks and e-mail addresses
        "oms-send-notices": ("oms.send_notices", settings.notice_interval),
        # the event log added to the SLA report's rollups: a report reads them caught up
        "oms-roll-up": ("oms.roll_up", settings.rollup_interval),
    }
    if settings.retention:
        # finished instances older than OMS_RETENTION, deleted in batches
        every["oms-prune"] = ("oms.prune", 3600.0)
    return {entry: {"task": task, "schedule": seconds, "options": {"queue": ENGINE_QUEUE, "expires": seconds}}
            for entry, (task, seconds) in every.items()}


def configure(**overrides: Any) -> OmsSettings:
    """Change settings at run time (``database_url=``, ``broker_url=``, …) for this process.

    Environment variables are the usual way; this is for programs and tests that
    switch backends without restarting.
    """

    settings = set_settings(**overrides)
    if current() is not app:  # attached: the broker is the shop's app's (see oms.attach)
        dispose_all()
        return settings
    app.conf.update(broker_settings(settings))
    # Drop pooled broker connections so the next publish connects to the new broker.
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()  # type: ignore[no-untyped-call]
    dispose_all()
    return settings
