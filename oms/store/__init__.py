"""The hot path's statements: each worker transition applied atomically, in as few round trips as the database allows.

The door (:mod:`oms.door`) decides *what* a transition does, from the definition
(which step comes next, whether a failure is retried) and builds the rows with
:mod:`oms.rows`. A store only applies that decision atomically, under the
precondition that the task is still as the worker saw it. Two stores implement
the same contract:

* :class:`~oms.store.postgres.PostgresStore`: one prepared statement per
  transition (a CTE), one round trip in autocommit, through psycopg directly;
* :class:`~oms.store.portable.PortableStore`: SQLAlchemy Core statements in one
  transaction; SQLite's store, and the reference the PostgreSQL one is tested against.

Lock order, everywhere: the instance row, then its task rows. Claims and lease
extensions touch one task row only and never wait for anything else.

A lease that lapsed ends the claim at that moment, swept or not: finishing,
extending or beating for a claim whose ``lease_expires_at`` is before ``now``
applies nothing (the door then raises ``LeaseLost``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..states import TaskStatus

if TYPE_CHECKING:
    from ..engine.plan import Offered, Plan
    from ..engine.task import Task
    from .db import Database


@dataclass(frozen=True)
class Finish:
    """End a running attempt and move its instance on, in one statement, as :mod:`oms.advance` planned it.

    Applied only if the task is still ``running`` and its lease has not lapsed at ``now``
    (for a lease sweep: lapsed before ``lapsed_before``); otherwise nothing is written.
    """

    task_id: str
    instance_id: str
    now: datetime
    #: ``done`` or ``failed``.
    status: TaskStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    #: Lapsed claims so far, written to the row when a lease sweep ends the attempt.
    lost: int | None = None
    lapsed_before: datetime | None = None
    #: Apply only if this worker holds the claim (``None``: whoever holds it).
    holder: str | None = None
    #: Stored in the instance's ``results`` under this step id, when ``result`` is given.
    step_id: str | None = None
    #: Steps this transition finishes (1 when a step is done): the instance is done when none is left.
    steps_done: int = 0
    #: Joins among ``new_tasks``: each one's counter goes down by one, and it is inserted only at zero
    #: (a mapped step's counter of items, when one of its items is done).
    joins: list[int] = field(default_factory=list)
    #: Apply only if this step's counter is above one: an item that is not its mapped step's last
    #: (the last one gathers the items' results, which a transaction of :mod:`oms.advance` does).
    unless_last: int | None = None
    #: The furthest step offered so far.
    current_step: int | None = None
    #: ``failed`` when the instance ends with this failure; its other open tasks are then
    #: ended with ``cancel_error`` and a ``task.cancelled`` event giving ``cancel_reason``.
    instance_status: str | None = None
    instance_error: str | None = None
    cancel_error: str | None = None
    cancel_reason: str | None = None
    #: Rows this transition may offer (the next steps, or a retry), and its events: a
    #: ``task.queued``/``task.retried`` only if its task was inserted, ``workflow.done`` only
    #: if the instance finished.
    new_tasks: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Started:
    """What a start did: how many instances it inserted, and the workflow's newest version it saw."""

    inserted: int
    latest: int | None


@dataclass(frozen=True)
class State:
    """Where a task and its instance stand, read when a transition did not apply."""

    task_status: str
    task_error: str | None
    instance_id: str
    instance_status: str
    #: The worker holding the task's claim (or who last did).
    worker_id: str | None = None
    lease_expires_at: datetime | None = None


class Store(Protocol):
    """The transitions of the hot path. ``now`` always comes from the caller (an injectable clock)."""

    def start(self, workflow_id: str, version: int, instances: list[dict[str, Any]], tasks: list[dict[str, Any]],
              events: list[dict[str, Any]]) -> Started:
        """Insert new instances with their first tasks and events, if ``version`` is still the latest.

        An instance whose ``idempotency_key`` already started one of this workflow is
        not inserted, nor are its tasks and events (see :meth:`started_with`).
        """

    def started_with(self, workflow_id: str, key: str) -> tuple[str, dict[str, Any]] | None:
        """The instance an idempotency key started, and its payload."""

    def claim_step(self, instance_id: str, index: int, item_index: int | None, worker_id: str, now: datetime,
                   lease_until: datetime) -> Task | None:
        """Claim the due pending attempt at step ``index`` (and item) of an instance (a push worker's message)."""

    def claim_topic(self, topic: str, worker_id: str, now: datetime,
                    lease_until: datetime) -> tuple[Task | None, datetime | None]:
        """Claim the oldest due pending attempt on ``topic``; if none, say when one next becomes due."""

    def finish(self, plan: Plan) -> list[Offered] | None:
        """Apply an ended attempt's plan; ``None`` if the task was no longer running (nothing written)."""

    def extend(self, task_id: str, now: datetime, lease_until: datetime, holder: str | None) -> bool:
        """Move a running claim's lease to ``lease_until``, unless it lapsed before ``now`` (and if ``holder``
        holds it, when given)."""

    def heartbeat(self, task_ids: list[str], now: datetime, lease_until: datetime) -> int:
        """Extend the leases of those of ``task_ids`` still running and not lapsed at ``now``; return how many."""

    def lookup(self, task_id: str) -> Task | None:
        """A task as a worker would hold it, whatever its status (for calls by id alone)."""

    def state(self, task_id: str) -> State | None:
        """The task's and its instance's status, to say why a transition did not apply."""

    def lapsed(self, now: datetime, topic: str | None, limit: int) -> list[tuple[Task, int, str | None]]:
        """Running attempts whose lease ran out before ``now``: ``(task, lost so far, worker id)``."""


def store_for(database: Database) -> Store:
    """The store for a database's dialect."""
    if database.dialect == "postgresql":
        from .postgres import PostgresStore

        return PostgresStore(database)
    from .portable import PortableStore

    return PortableStore(database)
