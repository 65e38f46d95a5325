"""Many finished attempts in one transaction: a batch of completions or failures, each judged on its own.

Each attempt's plan is the one a single completion makes (:class:`~oms.engine.plan.Plan`);
a batch changes only how many commits they share. In one transaction, in the order of
their instances (the lock order: two batches never wait on each other in a circle):

* the moves a store applies in one statement are sent together
  (:meth:`~oms.store.contract.Store.finish_in`; PostgreSQL: one pipeline, with the
  transaction's ``BEGIN`` and ``COMMIT``: one round trip for the batch). The server
  runs them one after the other, each seeing what those before it wrote, so a join
  whose branches finish in the same batch is offered once;
* the others (a step followed by a mapped or waiting step, a map's last item, every
  plan on SQLite) go through the transactional path, :func:`~oms.engine.plan.apply`,
  in their turn, in the same transaction.

An attempt that cannot end (its lease lost, finished already) writes nothing and
stops nothing: its result is ``None`` and the others go through.
"""

from __future__ import annotations

from ..store.contract import Move, Offered
from ..store.db import Database, retrying
from .plan import Plan, apply


def apply_all(db: Database, plans: list[Plan], what: str) -> list[list[Offered] | None]:
    """Apply ``plans`` in one transaction (retried whole while the database is unreachable); for each, in order,
    what it offered, or ``None`` if its attempt could not end."""

    def run() -> list[list[Offered] | None]:
        found: list[list[Offered] | None] = [None] * len(plans)
        with db.store.batch() as conn:
            sent: list[tuple[int, Move]] = []

            def flush(last: bool = False) -> None:
                finished = db.store.finish_in(conn, [move for _, move in sent], last=last)
                for (n, _), did in zip(sent, finished, strict=True):
                    if did.in_transaction:  # a map's item that may be its last: its instance is locked already
                        found[n] = apply(conn, plans[n])
                    else:
                        found[n] = did.offered if did.applied else None
                sent.clear()

            for n in sorted(range(len(plans)), key=lambda n: (plans[n].task.instance_id, n)):
                move = plans[n].move()
                if move is None:
                    flush()  # what came before it, and the transaction begun
                    found[n] = apply(conn, plans[n])
                else:
                    sent.append((n, move))
            flush(last=True)
        return found

    return retrying(run, what) if plans else []
