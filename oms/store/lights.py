"""SLA lights read from a row's clock: in Python for one row, in SQL for many, by the same rule.

The scanner records a light change when it gets to the row; between scans the
clock may already be further on. Every reader (``oms status``, ``oms list``, the
demo) shows the worse of the light recorded and the light of the clock, read at
the moment the row finished or, while it is open, now: a step that is overdue is
red before the scanner has seen it, and the same in every view.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal

from ..states import GREEN, LIGHTS, RED, YELLOW, worst
from .tables import UTCDateTime


def light_at(moment: datetime, warn_at: datetime | None, expires_at: datetime | None) -> str:
    """The light of a clock at ``moment``."""
    if expires_at is not None and moment >= expires_at:
        return RED
    if warn_at is not None and moment >= warn_at:
        return YELLOW
    return GREEN


def seen_light(recorded: str, warn_at: datetime | None, expires_at: datetime | None, finished_at: datetime | None,
               now: datetime) -> str:
    """The worse of the recorded light and the clock's (at ``finished_at``, or ``now`` while open)."""
    return worst(recorded, light_at(finished_at or now, warn_at, expires_at))


def rank(light: Any) -> ColumnElement[int]:
    """SQL rank of a light column: 0 green, 1 yellow, 2 red."""
    return case({light.value: light.rank for light in LIGHTS}, value=light, else_=0)


def seen_rank(recorded: Any, warn_at: Any, expires_at: Any, finished_at: Any, now: datetime) -> ColumnElement[int]:
    """:func:`seen_light` in SQL, as a rank (0 green, 1 yellow, 2 red), for rows with these columns."""
    moment = func.coalesce(finished_at, literal(now, UTCDateTime()))
    clock = case((and_(expires_at.is_not(None), moment >= expires_at), LIGHTS.index(RED)),
                 (and_(warn_at.is_not(None), moment >= warn_at), LIGHTS.index(YELLOW)), else_=0)
    stored = rank(recorded)
    return case((stored > clock, stored), else_=clock)
