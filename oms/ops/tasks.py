"""The engine's own Celery tasks (run by a worker on the ``oms`` queue, scheduled by beat)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..celery.app import engine_task
from ..notify import TASK as SEND_NOTICES
from ..notify import deliver
from ..settings import get_settings
from ..sla.scanner import scan_sla
from .reconcile import reconcile
from .retention import prune
from .sla_rollups import catch_up


def scan_sla_task() -> dict[str, Any]:
    """Beat entry: one SLA scan (see :func:`oms.sla.scan_sla`)."""
    return asdict(scan_sla())


def reconcile_task() -> int:
    """Beat entry: re-publish queued steps whose message was lost (see :mod:`oms.reconcile`)."""
    return reconcile()


def prune_task() -> int:
    """Beat entry, when ``OMS_RETENTION`` is set: delete instances finished longer ago (see :mod:`oms.retention`)."""

    retention = get_settings().retention
    return prune(retention).instances if retention else 0


def roll_up_task() -> int:
    """Beat entry: add the events recorded since the last pass to the SLA report's rollups (see
    :mod:`oms.ops.sla_rollups`); how many were read."""
    return catch_up()


def send_notices_task() -> dict[str, Any]:
    """Beat entry, and what :func:`oms.notify.kick` sends: deliver the notices due (see :mod:`oms.notify`)."""
    return asdict(deliver())


engine_task("oms.scan_sla", scan_sla_task)
engine_task("oms.reconcile", reconcile_task)
engine_task("oms.prune", prune_task)
engine_task("oms.roll_up", roll_up_task)
engine_task(SEND_NOTICES, send_notices_task)
