"""What a store promises: the hot path's transitions, and the typed moves a finished attempt makes.

The engine decides *what* a transition does, from the definition (which step comes
next, whether a failure is retried): :class:`oms.engine.plan.Plan`. A store applies
that decision atomically, under the precondition that the task is still as the
worker saw it:

* :class:`~oms.store.postgres.PostgresStore`: one prepared statement per
  transition (a CTE composed from :mod:`oms.store.moves`), one round trip in autocommit;
* :class:`~oms.store.portable.PortableStore`: the same builders as a few Core
  statements in one transaction (SQLite's store); a finished attempt there is
  applied by the engine's transactional path, :func:`oms.engine.plan.apply`.

Lock order, everywhere: the instance row, then its task rows. Claims and lease
extensions touch one task row only and never wait for anything else. A lease that
lapsed ends the claim at that moment, swept or not: finishing, extending or beating
for it applies nothing (the door then raises ``LeaseLost``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection

from ..model.task import Place, Task
from ..states import TaskStatus


@dataclass(frozen=True)
class Ending:
    """An attempt leaves ``running`` for ``status`` (done, failed, lapsed) at ``now``, if its claim allows.

    ``holder``: only if this worker holds the claim (``None``: whoever holds it). ``lapsed_before``: a lease
    sweep, which ends only a claim that lapsed before this moment (and writes ``lost``).
    """

    task_id: str
    instance_id: str
    now: datetime
    status: TaskStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    lost: int | None = None
    holder: str | None = None
    lapsed_before: datetime | None = None


@dataclass(frozen=True)
class Advance:
    """A step is done: its result stored under ``step_id``, its successors offered (a join only when the last of
    its predecessors is done), the instance done when no step is left."""

    step_id: str
    #: Joins among ``new_tasks``: each one's counter goes down by one, and it is offered only at zero.
    joins: list[int]
    #: The furthest step offered so far.
    current_step: int | None
    new_tasks: list[dict[str, Any]]


@dataclass(frozen=True)
class CountItem:
    """An item of mapped step ``step_index`` is done, and it is not the last (the last one gathers the items'
    results, which the transactional path does)."""

    step_index: int


@dataclass(frozen=True)
class Retry:
    """The attempt failed or its claim lapsed: the step is offered again (``new_task``, after any backoff)."""

    new_task: dict[str, Any]


@dataclass(frozen=True)
class EndInstance:
    """The attempt failed for good: the instance fails with ``error``, its other open tasks are cancelled."""

    error: str
    cancel_reason: str


@dataclass(frozen=True)
class Move:
    """A finished attempt and what follows, for the one-statement path; ``events`` in order, those recording
    an offer or the instance's end kept only if it happened."""

    ending: Ending
    then: Advance | CountItem | Retry | EndInstance
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Offered:
    """A task a transition queued: what to publish once it has committed."""

    step_index: int
    item_index: int | None = None
    countdown: float = 0.0


@dataclass(frozen=True)
class Finished:
    """What :meth:`Store.finish` did: ``offered`` if it applied; nothing if the task was no longer as the worker
    saw it; or ``in_transaction``: this move must be applied by the engine's transactional path."""

    applied: bool
    offered: list[Offered] = field(default_factory=list)
    in_transaction: bool = False


#: Apply the plan in a transaction (:func:`oms.engine.plan.apply`) instead.
IN_TRANSACTION = Finished(False, in_transaction=True)


@dataclass(frozen=True)
class Started:
    """What a start did: how many instances it inserted, and the workflow's newest version it saw."""

    inserted: int
    latest: int | None


@dataclass(frozen=True)
class State:
    """Where a task and its instance stand, read when a transition did not apply."""

    task_status: TaskStatus
    instance_id: str
    instance_status: str
    #: The worker holding the task's claim (or who last did).
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    #: A finished task's result (done) or reason (failed): its holder sending the same again is a repeat.
    result: dict[str, Any] | None = None
    error: str | None = None


class KeyInUse(Exception):
    """A start's business key belongs to an unfinished instance of the workflow: nothing was inserted."""


class Store(Protocol):
    """The transitions of the hot path. ``now`` always comes from the caller (an injectable clock)."""

    def start(self, workflow_id: str, version: int, instances: list[dict[str, Any]], tasks: list[dict[str, Any]],
              events: list[dict[str, Any]]) -> Started:
        """Insert new instances with their first tasks and events, if ``version`` is still the latest.

        An instance whose ``idempotency_key`` already started one of this workflow is
        not inserted, nor are its tasks and events (see :meth:`started_with`). Raises
        :class:`KeyInUse`, inserting nothing, when a ``business_key`` is an unfinished instance's.
        """

    def started_with(self, workflow_id: str, key: str) -> tuple[str, dict[str, Any]] | None:
        """The instance an idempotency key started, and its payload."""

    def claim_step(self, instance_id: str, index: int, item_index: int | None, worker_id: str, now: datetime,
                   lease_until: datetime) -> Task | None:
        """Claim the due pending attempt at step ``index`` (and item) of an instance (a push worker's message)."""

    def claim_items(self, instance_id: str, index: int, first: int, items: int, worker_id: str, now: datetime,
                    lease_until: datetime) -> list[Task]:
        """Claim the due pending attempts of items ``first`` to ``first + items - 1`` of a mapped step at once (a
        push worker's message of a chunk)."""

    def claim_steps(self, instance_id: str, indexes: list[int], worker_id: str, now: datetime,
                    lease_until: datetime) -> list[Task]:
        """Claim the due pending attempts of the steps ``indexes`` of an instance at once (a push worker's message of
        a chunk of sibling branches)."""

    def claim_topic(self, topic: str, worker_id: str, now: datetime,
                    lease_until: datetime) -> tuple[Task | None, datetime | None]:
        """Claim the oldest due pending attempt on ``topic``; if none, say when one next becomes due."""

    def claim_tasks(self, topic: str, worker_id: str, now: datetime, lease_until: datetime,
                    max_tasks: int) -> tuple[list[Task], datetime | None]:
        """Claim up to ``max_tasks`` of the oldest due pending attempts on ``topic`` at once; if none, say when one
        next becomes due."""

    def finish(self, move: Move) -> Finished:
        """Apply a finished attempt's move in one statement, or say it must be applied in a transaction."""

    def batch(self) -> AbstractContextManager[Connection]:
        """One transaction for a batch of finished attempts: committed when the block ends, rolled back if it
        raises. Every statement of the batch runs on the connection it yields, through :meth:`finish_in`."""

    def finish_in(self, conn: Connection, moves: list[Move], *, last: bool = False) -> list[Finished]:
        """Apply ``moves`` in order in the batch's transaction ``conn``, each as :meth:`finish` would, in one round
        trip where the dialect allows; a move it cannot apply so is :data:`IN_TRANSACTION`, left to the caller, in
        the same transaction, which must call this first (with no moves, if need be) so that the transaction has
        begun. ``last``: nothing follows but the commit, which may then travel with the moves."""

    def extend(self, task_id: str, now: datetime, lease_until: datetime, holder: str | None) -> bool:
        """Move a live claim's lease to ``lease_until`` (if ``holder`` holds it, when given)."""

    def heartbeat(self, task_ids: list[str], now: datetime, lease_until: datetime) -> int:
        """Extend the leases of those of ``task_ids`` still running and not lapsed at ``now``; return how many."""

    def lookup(self, task_id: str) -> Task | None:
        """A task as a worker would hold it, whatever its status (for calls by id alone)."""

    def state(self, task_id: str) -> State | None:
        """The task's and its instance's status, to say why a transition did not apply."""

    def lapsed(self, now: datetime, topic: str | None, limit: int) -> list[tuple[Task, int, str | None, Place]]:
        """Running attempts whose lease ran out before ``now``: ``(task, lost so far, worker id, what a re-offer
        keeps)``."""
