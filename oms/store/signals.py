"""Signals as stored: kept until the step waiting for them is ready, then marked taken by that step's attempt.

The statements run in the caller's transaction, which holds the instance's row
lock: a signal is taken once, whether it arrives after its step is ready or the
step becomes ready after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Join, Label, Table, insert, select, update

from .tables import signals


@dataclass(frozen=True)
class Signal:
    """One signal: its id, name and data, and the attempt that took it (``None`` while kept)."""

    id: int
    name: str
    data: dict[str, Any]
    received_at: datetime
    task_id: str | None = None


def _signal(row: Any) -> Signal:
    return Signal(row.id, row.name, row.data, row.received_at, row.task_id)


_COLUMNS = (signals.c.id, signals.c.name, signals.c.data, signals.c.received_at, signals.c.task_id)


def kept(conn: Connection, instance_id: str, name: str) -> Signal | None:
    """The signal ``name`` kept for the instance, not taken by any step yet."""
    row = conn.execute(select(*_COLUMNS).where(signals.c.instance_id == instance_id, signals.c.name == name,
                                               signals.c.consumed_at.is_(None)).limit(1)).first()
    return None if row is None else _signal(row)


def with_key(instance: Table, key: str | None) -> Join | Table:
    """``instance`` joined to the signal it received with the idempotency ``key`` (its columns ``seen_*``, null
    when none): the key is looked up in the statement that locks the instance."""
    if key is None:
        return instance
    return instance.outerjoin(signals, (signals.c.instance_id == instance.c.id) & (signals.c.idempotency_key == key))


def seen_columns(key: str | None) -> list[Label[Any]]:
    """The columns :func:`with_key` adds: the signal sent with the key, if any."""
    if key is None:
        return []
    return [signals.c.id.label("seen_id"), signals.c.name.label("seen_name"), signals.c.task_id.label("seen_task_id")]


def keep(conn: Connection, instance_id: str, name: str, data: dict[str, Any], key: str | None,
         now: datetime, *, taken_by: str | None = None) -> Signal:
    """Store a signal as received: kept until a step takes it, or taken at once by the attempt ``taken_by``."""
    taken = {} if taken_by is None else {"consumed_at": now, "task_id": taken_by}
    signal_id = conn.execute(insert(signals).values(instance_id=instance_id, name=name, data=data,
                                                    idempotency_key=key, received_at=now, **taken)
                             .returning(signals.c.id)).scalar_one()
    return Signal(signal_id, name, data, now, taken_by)


def consume(conn: Connection, signal_id: int, task_id: str, now: datetime) -> None:
    """Mark the signal taken by the attempt ``task_id``."""
    conn.execute(update(signals).where(signals.c.id == signal_id).values(consumed_at=now, task_id=task_id))


def received(conn: Connection, instance_id: str) -> list[Signal]:
    """Every signal the instance received, oldest first (``history`` and the page)."""
    return [_signal(row) for row in conn.execute(select(*_COLUMNS).where(signals.c.instance_id == instance_id)
                                                 .order_by(signals.c.id))]
