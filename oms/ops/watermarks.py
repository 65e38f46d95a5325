"""The event log read past a watermark: what ``/metrics`` and the SLA report's rollups share.

A rollup keeps, in a row of ``oms_metrics``, the id of the last event it has
added up; each pass reads only the events after it, at most :data:`BATCH`, so
its cost does not grow with the log. On PostgreSQL the watermark's row is locked
``SKIP LOCKED``: two processes rolling up at once take turns, and one that finds
the row taken leaves the work to the other. Events younger than :data:`SETTLE`
wait for the next pass, so that a transition still committing is not skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store.tables import MetricRow

#: Most events one pass rolls up (a backlog, after an upgrade, is caught up over several passes).
BATCH = 20_000
#: Events younger than this wait for the next pass (a transition may still be committing).
SETTLE = timedelta(seconds=2)
#: The watermarks' rows in ``oms_metrics``: the id of the last event rolled up, one row per rollup (its labels).
WATERMARK = "_watermark"


def labels(**values: str) -> str:
    """Labels as ``oms_metrics`` stores them: sorted JSON text, ``{}`` for none."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def watermark(session: Session, of: str = "") -> MetricRow | None:
    """The watermark of the rollup ``of`` (``""``: ``/metrics``'), locked for this pass; ``None`` while another
    process holds it."""
    key = labels(of=of) if of else "{}"
    query = select(MetricRow).where(MetricRow.metric == WATERMARK, MetricRow.labels == key)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    found = session.scalars(query).first()
    if found is None:
        exists = session.scalars(select(MetricRow.metric).where(MetricRow.metric == WATERMARK,
                                                               MetricRow.labels == key)).first()
        if exists is not None:
            return None  # locked by another pass
        found = MetricRow(metric=WATERMARK, labels=key, value=0.0)
        session.add(found)
        session.flush()
    return found


def rolled_up_to(session: Session, of: str) -> int:
    """The id of the last event the rollup ``of`` has added up (0: none), read without locking."""
    key = labels(of=of) if of else "{}"
    value = session.scalar(select(MetricRow.value).where(MetricRow.metric == WATERMARK, MetricRow.labels == key))
    return int(value or 0)


def settled(rows: Iterable[Any], now: datetime) -> Iterator[Any]:
    """The rows (events, in id order, with their ``at``) up to the first one younger than :data:`SETTLE`."""
    for row in rows:
        if row.at >= now - SETTLE:
            return
        yield row
