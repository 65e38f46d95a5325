"""A yellow light that predicts the breach: each topic's pace against each queued step's deadline.

A fixed fraction of the SLA warns too late when a backlog already makes the breach
certain. Each scan estimates, per topic with queued steps, its recent completion
rate and the 90th percentile of its run time, from the steps it finished within
``OMS_PREDICT_WINDOW`` (one query per topic). A queued step's predicted finish is
``now + position / rate + p90``, its position counted in the topic's queue (oldest
first). A step predicted to finish after its deadline turns yellow at once; one
turned yellow by a prediction alone turns green again, once, if a later scan
predicts it finishing before its warning time. A topic without enough recent
completions to trust (``OMS_PREDICT_MIN_SAMPLES``) is not predicted.

Numbering the oldest :data:`MAX_QUEUE` queued steps costs milliseconds, and most
scans find that no light moves. Before it, the scan reads the topic's
:class:`Bounds` from two partial indexes the database keeps in the transactions
that queue, claim and end steps: the soonest deadline of a step the prediction may
turn yellow, and the oldest step it turned yellow with the latest warning time among
them. A step's position is at most the queue's depth and the number of steps ready
no later than it, and at least one more than the steps ready before it: with these
counts, each stopped at what it must know, :func:`quiet` tells when no step can be
late and none predicted on time again. Then the queue is not read; when a light can
move it is, and the lights that move are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from math import ceil, floor
from typing import Any

from sqlalchemy import ColumnElement, Float, Integer, and_, bindparam, func, literal_column, or_, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from ..model.names import SYSTEM_PREFIX, reserved
from ..settings import get_settings
from ..states import GREEN, PREDICTED, YELLOW, TaskStatus
from ..store.tables import PREDICTABLE, PREDICTED_YELLOW, DefinitionRow, TaskRow

#: Where the prediction reads: a scan's connection outside any transaction, or a session.
Reader = Session | Connection

#: Queued steps per topic a scan looks at (the oldest): a deeper queue's tail is predicted once the head
#: moves, and the fraction rule, on its own clock, still warns it.
MAX_QUEUE = 10_000
#: Finished steps per topic the estimate reads (the newest in the window).
MAX_SAMPLES = 2_000
#: Seconds by which the bounds widen a deadline, for the clocks' rounding (SQLite's epoch counts milliseconds).
SLACK_S = 0.01


@dataclass(frozen=True)
class Pace:
    """A topic's recent pace: steps finished per second, and the 90th percentile of their run time."""

    topic: str
    rate: float
    p90_s: float
    samples: int
    window_s: float

    def finish(self, now: datetime, position: int) -> datetime:
        """When the step at ``position`` (1: next to be taken) in the queue should be done."""
        return now + timedelta(seconds=position / self.rate + self.p90_s)

    def inputs(self, position: int) -> dict[str, Any]:
        """What an escalation says of the estimate."""
        return {"position": position, "rate_per_s": round(self.rate, 4), "p90_run_s": round(self.p90_s, 3),
                "samples": self.samples, "window_s": self.window_s}


@dataclass(frozen=True)
class Change:
    """A light the prediction moves: ``yellow`` (predicted late) or ``green`` (a prediction taken back)."""

    task_id: str
    light: str
    predicted_finish: datetime
    inputs: dict[str, Any]


class epoch(FunctionElement[float]):
    """Seconds since 1970 of a UTC timestamp column, in the database's own dialect."""

    type = Float()
    inherit_cache = True


@compiles(epoch)
def _epoch(element: epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # date_part, not extract: since PostgreSQL 14 extract gives numeric, ten times slower to compute with
    return f"date_part('epoch', {compiler.process(element.clauses, **kw)})"


@compiles(epoch, "sqlite")
def _epoch_sqlite(element: epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


def pace(topic: str, now: datetime, count: int, oldest: datetime | None, p90: float | None) -> Pace | None:
    """The topic's pace over the window before ``now``, or ``None`` with too few finished steps to tell, from what
    the database counted of its newest ``MAX_SAMPLES`` finished steps there (reading the rows into Python cost a
    no-news scan more than all its queries)."""
    settings = get_settings()
    if count < settings.predict_min_samples or oldest is None:
        return None
    span = (now - oldest).total_seconds()
    if span <= 0:
        return None
    # the oldest sample opens the span: n finished in it, the first of them at its start
    return Pace(topic, (count - 1) / span if count > 1 else 0.0, float(p90 or 0.0), count, settings.predict_window)


@dataclass(frozen=True)
class Bounds:
    """What a topic's queue says of itself through two partial indexes, before its head is read."""

    #: The soonest deadline of its queued steps still green by the fraction rule and never predicted.
    soonest: datetime | None
    #: When the oldest of its queued steps yellow by a prediction alone became ready, and the latest warning time
    #: among them.
    first_predicted: datetime | None
    latest_warn: datetime | None

    @property
    def empty(self) -> bool:
        """No queued step the prediction could move."""
        return self.soonest is None and self.first_predicted is None


def bounds(session: Reader, topic: str) -> Bounds:
    """The topic's :class:`Bounds`: one statement, an index probe or two."""
    return Bounds(*session.execute(_BOUNDS, {"topic": topic}).one())


def outlook(session: Reader, topic: str, now: datetime) -> tuple[Bounds, Pace | None]:
    """The topic's :class:`Bounds` and, unless they are empty, its :func:`pace`: one statement, for a scan pays a
    round trip per statement, and most find that no light moves."""
    since = now - timedelta(seconds=get_settings().predict_window)
    soonest, first, latest, *counted = session.execute(_OUTLOOK, {"topic": topic, "since": since, "now": now}).one()
    found = Bounds(soonest, first, latest)
    return found, None if found.empty else pace(topic, now, *counted)


def quiet(session: Reader, topic: str, found: Bounds, estimate: Pace, now: datetime) -> bool:
    """Whether no light of the topic's queue can move at this pace, told without reading the queue: from its bounds
    and counts through the pending-steps index, each stopped at what it must know."""
    clock = now.timestamp() + estimate.p90_s
    return (_none_late(session, topic, found.soonest, estimate, now, clock)
            and _none_on_time(session, topic, found, estimate, clock))


def _none_late(session: Reader, topic: str, soonest: datetime | None, estimate: Pace, now: datetime,
               clock: float) -> bool:
    """No step still green can be late: one at ``position`` is when ``position > (expires_at - now - p90) * rate``.

    A step's position is at most the head's length and the queue's depth, and at most
    the number of steps ready no later than it. So none is late while the queue holds
    no more steps than the soonest deadline allows; nor, when it holds more, while the
    steps whose deadline that depth could reach are all among the first that many.
    """
    if soonest is None:
        return True
    room = (soonest.timestamp() - SLACK_S - clock) * estimate.rate
    if room < 1:
        return False
    if room >= MAX_QUEUE:
        return True
    depth = _count(session, _DEPTH, topic, MAX_QUEUE)
    if depth <= room:
        return True
    horizon = now + timedelta(seconds=estimate.p90_s + SLACK_S + depth / estimate.rate)
    last = session.scalar(_LAST_READY, {"topic": topic, "horizon": horizon})
    return last is not None and _count(session, _THROUGH, topic, floor(room) + 1, last) <= room


def _none_on_time(session: Reader, topic: str, found: Bounds, estimate: Pace, clock: float) -> bool:
    """No step a prediction turned yellow can be on time again: one at ``position`` is when ``position < (warn_at -
    now - p90) * rate``. A step's position is at least one more than the steps ready before it: none is on time
    while as many are queued ahead of the oldest predicted one as the latest warning time allows (or the head
    ends before it)."""
    if found.first_predicted is None or found.latest_warn is None:
        return True
    room = (found.latest_warn.timestamp() + SLACK_S - clock) * estimate.rate
    if room <= 1:
        return True
    ahead = _count(session, _EARLIER, topic, min(ceil(room), MAX_QUEUE), found.first_predicted)
    return ahead >= MAX_QUEUE or 1 + ahead >= room


def changes(session: Reader, now: datetime, *, bounded: bool = True, mark: tuple[Any, ...] | None = None
            ) -> list[Change]:
    """The lights this scan's prediction moves: per topic with queued steps its bounds, its pace and, unless the
    bounds show no light can move (``bounded=False``: read it anyway), its queue. ``mark``: the definitions'
    :data:`DEFINITIONS_MARK`, when the caller read it.

    The queue is read in the database, which returns only the steps whose light moves:
    a step at ``position`` finishes at ``now + position / rate + p90``, so it is late
    when ``position > (expires_at - now - p90) * rate``, and back on time when
    ``position < (warn_at - now - p90) * rate``.
    """
    if get_settings().predict_window <= 0:
        return []
    found: list[Change] = []
    for topic in sorted(topics(session, mark)):
        queue, estimate = outlook(session, topic, now)
        if estimate is None or estimate.rate <= 0 or (bounded and quiet(session, topic, queue, estimate, now)):
            continue
        moving = session.execute(_MOVING, {"topic": topic, "clock": now.timestamp(), "p90": estimate.p90_s,
                                           "rate": estimate.rate}).all()
        for row in moving:
            light = YELLOW if row.light == GREEN else GREEN
            found.append(Change(row.id, light, estimate.finish(now, row.position), estimate.inputs(row.position)))
    return found


def _count(session: Reader, statement: Any, topic: str, limit: int, at: datetime | None = None) -> int:
    """The topic's queued steps ``statement`` counts (those ready before or through ``at``), up to ``limit``."""
    return int(session.scalar(statement, {"topic": topic, "limit": limit, "at": at}) or 0)


# -- the statements, built once (a scan runs them per topic; building them anew cost more than running them) --

#: Literals, not parameters: a prepared statement's generic plan then uses the partial indexes on status.
_PENDING: ColumnElement[str] = literal_column(f"'{TaskStatus.PENDING.value}'")
_DONE: ColumnElement[str] = literal_column(f"'{TaskStatus.DONE.value}'")

#: The oldest MAX_QUEUE queued steps of a topic (the order claims take, and the index's), numbered after: a
#: window over the whole queue would read all of it to number the rows that share a ready_at. Counted ROWS,
#: not RANGE: a RANGE window spools every run of equal ready_at (a start of many at once).
_HEAD = (
    select(TaskRow.id, TaskRow.light, TaskRow.light_reason, TaskRow.warn_at, TaskRow.expires_at, TaskRow.ready_at)
    .where(TaskRow.topic == bindparam("topic"), TaskRow.status == _PENDING)
    .order_by(TaskRow.ready_at).limit(MAX_QUEUE).subquery()
)
_QUEUE = select(_HEAD, func.row_number().over(order_by=_HEAD.c.ready_at, rows=(None, 0)).label("position")
                ).subquery()
_AHEAD = bindparam("clock", type_=Float()) + bindparam("p90", type_=Float())
_LATE = _QUEUE.c.position > (epoch(_QUEUE.c.expires_at) - _AHEAD) * bindparam("rate", type_=Float())
_ON_TIME = _QUEUE.c.position < (epoch(_QUEUE.c.warn_at) - _AHEAD) * bindparam("rate", type_=Float())
#: The queued steps whose light the prediction moves.
_MOVING = select(_QUEUE.c.id, _QUEUE.c.light, _QUEUE.c.position).where(or_(
    and_(_QUEUE.c.light == GREEN, _QUEUE.c.light_reason.is_(None), _LATE),
    and_(_QUEUE.c.light == YELLOW, _QUEUE.c.light_reason == PREDICTED, _ON_TIME),
))


#: A topic's :class:`Bounds`, each read from the partial index its condition names (the same text, so that SQLite
#: sees the query implies it).
_BOUND = (
    select(func.min(TaskRow.expires_at)).where(TaskRow.topic == bindparam("topic"), text(PREDICTABLE))
    .correlate(None).scalar_subquery(),
    select(func.min(TaskRow.ready_at)).where(TaskRow.topic == bindparam("topic"), text(PREDICTED_YELLOW))
    .correlate(None).scalar_subquery(),
    select(func.max(TaskRow.warn_at)).where(TaskRow.topic == bindparam("topic"), text(PREDICTED_YELLOW))
    .correlate(None).scalar_subquery(),
)
_BOUNDS = select(*_BOUND)
#: The newest finished steps of a topic in the window, read only when its bounds are not empty (a topic its workers
#: keep up with has no queue, and many of them).
_RECENT = (
    select(TaskRow.started_at, TaskRow.finished_at)
    .where(TaskRow.topic == bindparam("topic"), TaskRow.status == _DONE, TaskRow.finished_at >= bindparam("since"),
           TaskRow.finished_at <= bindparam("now"), or_(_BOUND[0].is_not(None), _BOUND[1].is_not(None)))
    .order_by(TaskRow.finished_at.desc()).limit(MAX_SAMPLES).cte("recent")
)
_RUN = epoch(_RECENT.c.finished_at) - epoch(_RECENT.c.started_at)
#: The run time at the 90th percentile among the samples whose start is known: the ``floor(0.9 n)``-th (from 0).
_P90 = (select(_RUN).where(_RECENT.c.started_at.is_not(None)).order_by(_RUN).limit(1)
        .offset(select(func.count(_RECENT.c.started_at) * 9 // 10).scalar_subquery()))
#: A topic's bounds, then how many steps it finished in the window, the oldest of them, and their p90 run time.
_OUTLOOK = select(*_BOUND, func.count(), func.min(_RECENT.c.finished_at), _P90.scalar_subquery()).select_from(_RECENT)


def _counted(*where: ColumnElement[bool]) -> Any:
    """How many of the topic's queued steps match ``where``, counted up to ``limit``: the pending-steps index is read
    no further (nor the table, where it can tell a row is visible without it)."""
    found = (select(TaskRow.ready_at).where(TaskRow.topic == bindparam("topic"), TaskRow.status == _PENDING, *where)
             .limit(bindparam("limit", type_=Integer)).subquery())
    return select(func.count()).select_from(found)


_AT = bindparam("at", type_=TaskRow.ready_at.type)
_DEPTH = _counted()
_EARLIER = _counted(TaskRow.ready_at < _AT)
_THROUGH = _counted(TaskRow.ready_at <= _AT)
#: When the newest of the topic's steps still green and due before ``horizon`` became ready.
_LAST_READY = select(func.max(TaskRow.ready_at)).where(
    TaskRow.topic == bindparam("topic"), text(PREDICTABLE),
    TaskRow.expires_at < bindparam("horizon", type_=TaskRow.expires_at.type))


#: Topics of the stored definitions, by database and by what identifies the definitions' table then.
_topics: dict[str, tuple[tuple[Any, ...], frozenset[str]]] = {}
_USER = DefinitionRow.workflow_id.not_like(f"{SYSTEM_PREFIX}%")
#: What identifies the stored definitions at a moment (how many, the newest): their topics are read again when it
#: changes. A scan reads it in the statement it opens with.
DEFINITIONS_MARK = (select(func.count()).where(_USER).scalar_subquery(),
                    select(func.max(DefinitionRow.created_at)).where(_USER).scalar_subquery())


def topics(reader: Reader, mark: tuple[Any, ...] | None = None) -> frozenset[str]:
    """The topics of every stored workflow definition but the engine's own, read again when ``mark`` (the
    :data:`DEFINITIONS_MARK` now, read here when not given) says one was saved."""
    if mark is None:
        mark = tuple(reader.execute(select(*DEFINITIONS_MARK)).one())
    bind = reader.get_bind() if isinstance(reader, Session) else reader
    url = str(bind.engine.url)
    cached = _topics.get(url)
    if cached is not None and cached[0] == mark:
        return cached[1]
    specs = reader.scalars(select(DefinitionRow.spec).where(_USER))
    found = frozenset(topic for spec in specs for topic in _spec_topics(spec))
    _topics[url] = (mark, found)
    return found


def _spec_topics(spec: Any) -> list[str]:
    """The topics a stored definition's steps name (none for one that no longer reads: the scan goes on), but the
    engine's own: a person, a signal or a timer ends those steps, at no worker's pace."""
    try:
        return [topic for step in spec["steps"] if not reserved(topic := str(step.get("topic") or step["id"]))]
    except (TypeError, KeyError, AttributeError):
        return []
