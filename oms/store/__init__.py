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
    from ..db import Database
    from ..task import Task


@dataclass(frozen=True)
class Finish:
    """End a running attempt and move its instance on, as the door decided.

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
    #: Stored in the instance's ``results`` under this step id, when ``result`` is given.
    step_id: str | None = None
    #: The step the instance is now at.
    current_step: int | None = None
    #: ``done``/``failed`` when the instance ends with this transition.
    instance_status: str | None = None
    instance_error: str | None = None
    #: Rows offered by this transition (the next step, or a retry), and every event it writes.
    new_tasks: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class State:
    """Where a task and its instance stand, read when a transition did not apply."""

    task_status: str
    task_error: str | None
    instance_id: str
    instance_status: str
    lease_expires_at: datetime | None = None


class Store(Protocol):
    """The transitions of the hot path. ``now`` always comes from the caller (an injectable clock)."""

    def start(self, workflow_id: str, version: int, instances: list[dict[str, Any]], tasks: list[dict[str, Any]],
              events: list[dict[str, Any]]) -> bool:
        """Insert new instances with their first tasks and events, if ``version`` is still the latest."""

    def claim_step(self, instance_id: str, index: int, worker_id: str, now: datetime,
                   lease_until: datetime) -> Task | None:
        """Claim the due pending attempt at step ``index`` of an instance (a push worker's message)."""

    def claim_topic(self, topic: str, worker_id: str, now: datetime,
                    lease_until: datetime) -> tuple[Task | None, datetime | None]:
        """Claim the oldest due pending attempt on ``topic``; if none, say when one next becomes due."""

    def finish(self, move: Finish) -> bool:
        """Apply ``move``; ``False`` if the task was no longer running (nothing written)."""

    def extend(self, task_id: str, now: datetime, lease_until: datetime) -> bool:
        """Move a running claim's lease to ``lease_until``, unless it lapsed before ``now``."""

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
