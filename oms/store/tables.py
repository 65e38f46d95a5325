"""Every table of the engine, in one place, with indexes shaped like the hot queries.

One schema serves SQLite and PostgreSQL: JSON becomes JSONB on PostgreSQL and the
partial indexes become plain ones where the database has no ``WHERE`` on indexes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from ..states import GREEN, InstanceStatus, Light, LightReason, StepKind, TaskStatus

Json = JSON().with_variant(JSONB(), "postgresql")
EventId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def literal(member: StrEnum) -> ColumnElement[str]:
    """A status, light or event kind as a SQL literal, not a parameter: a prepared statement's generic plan can then
    use the partial indexes defined on it."""
    return literal_column(f"'{member.value}'", String)


#: Instances not finished well (pending, running, failed): what ``/metrics`` counts, through a partial index.
UNFINISHED_INSTANCES = f"status <> '{InstanceStatus.DONE.value}' AND status <> '{InstanceStatus.CANCELLED.value}'"
#: Queued steps a prediction may turn yellow (green by the fraction rule, never predicted), and those a prediction
#: alone turned yellow (which it may turn green again): each in a partial index the scan's prediction reads, and
#: in that prediction's queries as written here, so that both dialects see the query implies the index.
PREDICTABLE = (f"status = '{TaskStatus.PENDING.value}' AND light = '{Light.GREEN.value}' "
               "AND light_reason IS NULL")
PREDICTED_YELLOW = (f"status = '{TaskStatus.PENDING.value}' AND light = '{Light.YELLOW.value}' "
                    f"AND light_reason = '{LightReason.PREDICTED.value}'")


def where(condition: str) -> dict[str, Any]:
    """A partial index's condition, the same on PostgreSQL and SQLite."""
    return {"postgresql_where": text(condition), "sqlite_where": text(condition)}


def equals(column: str, member: StrEnum) -> dict[str, Any]:
    """A partial index on the rows whose ``column`` holds ``member``."""
    return where(f"{column} = '{member.value}'")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: Json}


class DefinitionRow(Base):
    """One version of a workflow definition. A changed definition is a new version."""

    __tablename__ = "oms_definitions"

    workflow_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: As saved, in plain JSON (not JSONB) on PostgreSQL too: a form's properties keep their author's order.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class InstanceRow(Base):
    """One run of a workflow, pinned to the definition version it started with."""

    __tablename__ = "oms_instances"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    current_step: Mapped[int] = mapped_column(default=0)
    payload: Mapped[dict[str, Any]]
    #: ``{step_id: result}`` for every step that returned a result.
    results: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    #: The workflow's own deadline (``created_at + workflow sla``), when it has one.
    warn_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    light: Mapped[str] = mapped_column(String(8), default=GREEN)
    #: When the SLA scanner must next look at this row (``None``: never again).
    sla_check_at: Mapped[datetime | None]
    #: Steps not done yet; the instance is done when none is left.
    steps_left: Mapped[int] = mapped_column(default=0, server_default="0")
    #: ``{step index: count}`` of what a step still waits for: a join, its predecessors
    #: not done; a mapped step, its items not done. Moved under the instance's row lock,
    #: so the last of several concurrent completions is the one that sees zero.
    waiting: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    #: The caller's key for this start: starting the workflow again with it returns this instance.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    #: The calendar the instance's own SLA counts in (to move its clock when the calendar changes).
    calendar_id: Mapped[str | None] = mapped_column(String(128))
    #: The case's own name (a form number a citizen quotes): unique among the workflow's unfinished instances.
    business_key: Mapped[str | None] = mapped_column(String(255))
    #: Rungs of the workflow's escalation ladder fired so far (``None``: none, or no ladder).
    rung: Mapped[int | None]

    __table_args__ = (
        Index("ix_oms_instances_workflow_status", "workflow_id", "status"),
        #: ``oms prune``: finished instances, oldest first.
        Index(
            "ix_oms_instances_finished",
            "finished_at",
            **where("finished_at IS NOT NULL"),
        ),
        Index(
            "ix_oms_instances_idempotency",
            "workflow_id",
            "idempotency_key",
            unique=True,
            **where("idempotency_key IS NOT NULL"),
        ),
        Index(
            "ix_oms_instances_sla_check",
            "sla_check_at",
            **where("sla_check_at IS NOT NULL"),
        ),
        #: One unfinished instance per business key and workflow (``start_workflow(..., business_key=)``)…
        Index(
            "ix_oms_instances_business_key_open",
            "workflow_id",
            "business_key",
            unique=True,
            **where("business_key IS NOT NULL AND finished_at IS NULL"),
        ),
        #: …and every instance, finished or not, found by its key (``oms list --key``).
        Index(
            "ix_oms_instances_business_key",
            "business_key",
            **where("business_key IS NOT NULL"),
        ),
        #: ``/metrics``: the instances not finished well, by workflow, without reading the finished ones.
        Index(
            "ix_oms_instances_unfinished",
            "workflow_id",
            "status",
            **where(UNFINISHED_INSTANCES),
        ),
    )


class TaskRow(Base):
    """One attempt at one step: the task table of the specification, plus what the engine needs."""

    __tablename__ = "oms_tasks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("oms_instances.id", ondelete="CASCADE"))
    workflow_id: Mapped[str] = mapped_column(String(128))
    step_id: Mapped[str] = mapped_column(String(128))
    step_index: Mapped[int]
    topic: Mapped[str] = mapped_column(String(128))
    #: 1 for the first attempt at this step, +1 for each retry or re-offer.
    attempt: Mapped[int] = mapped_column(default=1)
    #: Failed attempts so far at this step; compared with the step's ``retries``.
    failures: Mapped[int] = mapped_column(default=0)
    #: Claims lost so far (worker died, lease ran out); compared with ``max_deliveries``.
    lost: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    #: When the step was offered (after any retry backoff): the SLA clock starts here.
    ready_at: Mapped[datetime]
    #: Past this the step is yellow (default: 80% of the SLA).
    warn_at: Mapped[datetime]
    #: ``ready_at + sla``: past this the step is late (red).
    expires_at: Mapped[datetime]
    #: ``green`` until ``warn_at``, ``yellow`` until ``expires_at``, ``red`` after; frozen when finished.
    light: Mapped[str] = mapped_column(String(8), default=GREEN)
    #: When the SLA scanner must next look at this row: ``warn_at`` while green,
    #: ``expires_at`` while yellow, ``None`` once red or finished in time.
    sla_check_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: The claim is void after this unless extended (pull: ``extend_lease``; push: heartbeats).
    lease_expires_at: Mapped[datetime | None]
    #: When a message offering this attempt was last published (the reconciler's clock).
    dispatched_at: Mapped[datetime | None]
    #: A mapped step's item: its position in the list, and the value the handler gets.
    item_index: Mapped[int | None]
    item: Mapped[Any | None] = mapped_column(JSON(none_as_null=True).with_variant(JSONB(none_as_null=True),
                                                                                 "postgresql"))
    #: The calendar the step's SLA counts in (to move its clock when the calendar changes).
    calendar_id: Mapped[str | None] = mapped_column(String(128))
    #: Since when the step's clock is paused, and why (``act.pause_clock``); ``None`` while it runs.
    paused_at: Mapped[datetime | None]
    pause_reason: Mapped[str | None] = mapped_column(Text)
    #: Seconds the clock has been paused in all, before the current pause.
    paused_s: Mapped[float | None] = mapped_column(Float)
    #: Why the light is what it is when not the fraction rule: ``predicted`` (a backlog will make the step
    #: late), ``cleared`` (a prediction taken back: the step is not predicted again).
    light_reason: Mapped[str | None] = mapped_column(String(16))
    #: When the scanner last predicted the step would finish (see :mod:`oms.predict`).
    predicted_finish: Mapped[datetime | None]
    #: Rungs of the step's escalation ladder fired for this attempt (``None``: none, or no ladder).
    rung: Mapped[int | None]
    #: A human step's candidates, ``{"users": [...], "groups": [...]}``: its definition's ``assign`` until a
    #: supervisor reassigns it. ``worker_id`` is then the person holding her claim (no lease: it does not lapse).
    assign: Mapped[dict[str, Any] | None]
    #: A timer: when it ends by itself (the SLA scan ends it, through :data:`ix_oms_tasks_timers`).
    wake_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_oms_tasks_instance_step", "instance_id", "step_index", "item_index"),
        Index(
            "ix_oms_tasks_pending_topic",
            "topic",
            "ready_at",
            **equals("status", TaskStatus.PENDING),
        ),
        Index(
            "ix_oms_tasks_pending_ready",
            "ready_at",
            **equals("status", TaskStatus.PENDING),
        ),
        Index(
            "ix_oms_tasks_sla_check",
            "sla_check_at",
            **where("sla_check_at IS NOT NULL"),
        ),
        Index(
            "ix_oms_tasks_red_expires",
            "expires_at",
            **equals("light", Light.RED),
        ),
        Index(
            "ix_oms_tasks_done_topic",
            "topic",
            "finished_at",
            **equals("status", TaskStatus.DONE),
        ),
        Index(
            "ix_oms_tasks_lease",
            "lease_expires_at",
            **equals("status", TaskStatus.RUNNING),
        ),
        #: Timers still to end: the scan reads the due ones, and nothing while none is.
        Index(
            "ix_oms_tasks_timers",
            "wake_at",
            **where(f"wake_at IS NOT NULL AND status = '{TaskStatus.PENDING.value}'"),
        ),
        #: The scan's prediction: per topic, the soonest deadline of a step it may turn yellow, and the oldest of
        #: those it did (:mod:`oms.sla.predict`): while these show no step can move, the queue is not read.
        Index("ix_oms_tasks_predictable", "topic", "expires_at", "ready_at", **where(PREDICTABLE)),
        Index("ix_oms_tasks_predicted", "topic", "ready_at", **where(PREDICTED_YELLOW)),
        #: Human steps not finished: an inbox reads these, never the machine steps.
        Index(
            "ix_oms_tasks_human_open",
            "expires_at",
            **where(f"topic = '{StepKind.HUMAN.topic}' AND (status = '{TaskStatus.PENDING.value}' OR "
                    f"status = '{TaskStatus.RUNNING.value}')"),
        ),
    )


class EventRow(Base):
    """The event log: one row per transition, written in the transition's transaction."""

    __tablename__ = "oms_events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(40))
    task_id: Mapped[str | None] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    step_id: Mapped[str | None] = mapped_column(String(128))
    attempt: Mapped[int | None]
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (Index("ix_oms_events_instance", "instance_id", "id"),)


class SignalRow(Base):
    """An outside event for one instance (:func:`oms.signal`): kept until the step waiting for it is ready."""

    __tablename__ = "oms_signals"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("oms_instances.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The sender's key for it: the same key again changes nothing.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime]
    #: When its step took it, and which attempt (``None``: kept, its step not ready yet).
    consumed_at: Mapped[datetime | None]
    task_id: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        Index("ix_oms_signals_key", "instance_id", "idempotency_key", unique=True,
              **where("idempotency_key IS NOT NULL")),
        #: Signals kept for steps not ready yet: what a step that becomes ready, and the scan, look for.
        Index("ix_oms_signals_kept", "instance_id", "name", **where("consumed_at IS NULL")),
    )


class UserRow(Base):
    """A person who works human steps from her inbox (``oms user create``); her token's SHA-256 only is kept."""

    __tablename__ = "oms_users"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: The groups she belongs to (a human step's ``assign.groups`` names them).
    groups: Mapped[list[str]] = mapped_column(Json, default=list)
    email: Mapped[str | None] = mapped_column(String(320))
    #: ``person``, or ``supervisor``: a person who may also reassign her groups' steps.
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    #: Set by ``oms user disable``: her claims went back to the queue and her token stopped working.
    disabled_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_oms_users_token", "token_hash", unique=True),)


class CalendarRow(Base):
    """A calendar (:class:`oms.Calendar`): its specification as given, and its digest to see changes."""

    __tablename__ = "oms_calendars"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    spec: Mapped[dict[str, Any]]
    digest: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class RunRow(Base):
    """One run of the engine's upkeep: an SLA scan, a reconciler pass, a prune.

    Workers, ``oms list``/``status`` and ``oms doctor`` read the newest scan to say
    when none has run for a while (no beat: the SLA is not being held).
    """

    __tablename__ = "oms_runs"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    #: ``scan``, ``reconcile`` or ``prune``.
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    #: Rows the run moved on: lights changed, claims swept, steps published again, instances pruned.
    rows: Mapped[int] = mapped_column(default=0)
    #: Rows it could not handle: each logged, recorded on the row, and left for the next run.
    errors: Mapped[int] = mapped_column(default=0)
    #: The run's report, by what it counted.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: ``host:pid`` of the process that ran it.
    host: Mapped[str] = mapped_column(String(255))

    __table_args__ = (Index("ix_oms_runs_kind_finished", "kind", "finished_at"),)


class TokenRow(Base):
    """A bearer token of the HTTP API: only its SHA-256 is kept, never the token itself."""

    __tablename__ = "oms_api_tokens"

    #: The operator's name for it (``oms token revoke NAME``).
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: Hex SHA-256 of the token: enough for a high-entropy secret, and found by index.
    token_hash: Mapped[str] = mapped_column(String(64))
    #: ``admin``, ``starter``, ``reader`` or ``worker``.
    role: Mapped[str] = mapped_column(String(16))
    #: A worker token's topics, comma-separated; ``None`` for the other roles.
    topics: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    #: Set by ``oms token revoke``: the token stops working at the next request.
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_oms_api_tokens_hash", "token_hash", unique=True),)


class ChannelRow(Base):
    """Where notices go (``oms channel create``): a webhook (Slack's and Teams' incoming webhooks are webhooks) or
    an e-mail address. A webhook's secret signs its bodies; it is never logged nor returned."""

    __tablename__ = "oms_channels"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: ``webhook`` or ``email``.
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(320))
    secret: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class NoticeRow(Base):
    """The outbox: one notice to one target, written in the transaction of the escalation that decided it and
    sent after it by a Celery task; its ``id`` is what a receiver deduplicates on."""

    __tablename__ = "oms_notices"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[datetime]
    instance_id: Mapped[str | None] = mapped_column(String(40))
    task_id: Mapped[str | None] = mapped_column(String(40))
    workflow_id: Mapped[str] = mapped_column(String(128))
    step_id: Mapped[str | None] = mapped_column(String(128))
    #: The ladder's rung that sent it (its position), if a ladder did.
    rung: Mapped[int | None]
    #: Whom, as the ladder names it once resolved: ``user:alice``, ``group:supervisors``, a channel's name.
    target: Mapped[str] = mapped_column(String(255))
    #: The facts it tells: instance, step, light, deadline, time over, the instance page's link.
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: ``pending`` (to send, at ``next_attempt_at``), ``sent``, or ``failed`` (gave up).
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_oms_notices_due", "next_attempt_at", **where("status = 'pending'")),
        Index("ix_oms_notices_created", "created_at"),
    )


class NoticeAttemptRow(Base):
    """One attempt at sending a notice, and what came of it."""

    __tablename__ = "oms_notice_attempts"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    notice_id: Mapped[str] = mapped_column(ForeignKey("oms_notices.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    ok: Mapped[bool]
    #: The receiver's answer (``HTTP 200``, ``250 OK``) or the error.
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_oms_notice_attempts_notice", "notice_id", "id"),)


class SlaRollupRow(Base):
    """The SLA report's rollup of the event log (:mod:`oms.ops.sla_rollups`): per UTC day, workflow, step and
    calendar, the steps finished, within their SLA, the breaches, and log-spaced histograms of their times.

    Kept when ``oms prune`` deletes the events it was rolled up from, so the report of a month long pruned
    still reads the same. ``step_id`` ``""`` is the workflow's own SLA (its instances); ``calendar_id`` ``""``
    wall time.
    """

    __tablename__ = "oms_sla_rollups"

    #: The UTC day the step finished (a breach: the day its deadline passed).
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    step_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    calendar_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: Who ends the step (``worker``, ``human``, ``wait``, ``timer``), or ``workflow`` for the workflow's own row.
    kind: Mapped[str] = mapped_column(String(16))
    #: Steps done (instances done, on the workflow's row), and of them those done before their deadline.
    finished: Mapped[int] = mapped_column(default=0)
    within_sla: Mapped[int] = mapped_column(default=0)
    #: Breaches the SLA scanner recorded (``task.sla_violated``, ``workflow.sla_violated``), finished or not.
    breaches: Mapped[int] = mapped_column(default=0)
    #: Working seconds past the deadline, summed over the late ones.
    over_s: Mapped[float] = mapped_column(Float, default=0.0)
    #: The longest SLA seen, in working seconds (``None``: no SLA).
    sla_s: Mapped[float | None] = mapped_column(Float)
    #: ``{"queue_wait"|"run"|"total"|"over": {bucket: count}}``, in working seconds (:mod:`oms.ops.histograms`).
    histograms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: ``{hour: breaches}``: the local hour (in the calendar's time zone; UTC without one) each deadline passed.
    breach_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The ten latest (by time over, then total) finished: ``[{instance_id, business_key, total_s, over_s, …}]``.
    worst: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)


class MetricRow(Base):
    """Counters and histogram buckets of ``/metrics``, rolled up from the event log past a watermark.

    Scrapes add only the events recorded since the last one, so a scrape costs the
    same on a table of a million tasks as on an empty one, and every process reads
    the same numbers.
    """

    __tablename__ = "oms_metrics"

    #: The metric's sample name (``oms_steps_done_total``, ``oms_queue_wait_seconds_bucket``, …).
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Its labels as sorted JSON text (``{"le":"1.0","step":"a","workflow":"w"}``); ``{}`` for none.
    labels: Mapped[str] = mapped_column(String(512), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)


#: The tables as Core :class:`~sqlalchemy.Table` objects, for the statements of :mod:`oms.store.moves`.
definitions = cast(Table, DefinitionRow.__table__)
instances = cast(Table, InstanceRow.__table__)
tasks = cast(Table, TaskRow.__table__)
events = cast(Table, EventRow.__table__)
signals = cast(Table, SignalRow.__table__)
users = cast(Table, UserRow.__table__)
channels = cast(Table, ChannelRow.__table__)
notices = cast(Table, NoticeRow.__table__)
notice_attempts = cast(Table, NoticeAttemptRow.__table__)
sla_rollups = cast(Table, SlaRollupRow.__table__)
