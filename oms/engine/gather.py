"""Group commit: the attempts that threads of one process end at the same time share one transaction.

An API process serving eight HTTP workers, or a push worker with a threads pool,
ends many attempts at once, each in its own thread. Alone, each would pay its own
statement and its own durable commit. Here the first caller applies its plan at once,
alone, exactly as before (no timer: a lone caller waits for nobody); those that arrive
while a transaction is under way queue, and when it ends the first of them applies
everything queued in one transaction (:func:`oms.engine.batches.apply_all`, the path
of ``complete_tasks``), then hands on. So the batch grows with the load and costs
nothing without it.

Each plan is judged on its own as in a batch: one that cannot apply (its lease lost,
finished already) gets ``None`` and the others go through. Should a batch fail for a
reason that is not the database being unreachable, each of its plans is applied again
alone, so that one bad plan costs only its own caller.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..store.contract import Offered
from ..store.db import TRANSIENT
from .checks import MAX_BATCH
from .plan import Plan

#: Apply one plan: what it offered, or ``None`` if its attempt could not end.
ApplyOne = Callable[[Plan, str], "list[Offered] | None"]
#: Apply many plans in one transaction: for each, in order, what :data:`ApplyOne` would return.
ApplyMany = Callable[[list[Plan], str], "list[list[Offered] | None]"]


@dataclass(eq=False)
class _Caller:
    """One thread's plan, and then its answer."""

    plan: Plan
    what: str
    answered: threading.Event = field(default_factory=threading.Event)
    #: Set when this caller is to apply a batch (its own plan first in it).
    batch: list[_Caller] | None = None
    offered: list[Offered] | None = None
    error: BaseException | None = None


class Gather:
    """Applies the plans of concurrent callers in shared transactions (one at a time per process)."""

    def __init__(self, one: ApplyOne, many: ApplyMany) -> None:
        self._one, self._many = one, many
        self._lock = threading.Lock()
        self._queue: list[_Caller] = []
        self._busy = False
        #: How many plans each transaction held (1: a lone caller), for the tests.
        self.sizes: Counter[int] = Counter()

    def end(self, plan: Plan, what: str) -> list[Offered] | None:
        """Apply ``plan``, alone or with those of other threads; what it offered, or ``None`` if it could not end."""
        me = _Caller(plan, what)
        with self._lock:
            if self._busy:
                self._queue.append(me)
            else:
                self._busy, me.batch = True, [me]
        if me.batch is None:
            me.answered.wait()
            me.answered.clear()  # woken with an answer, or to apply a batch that holds this caller's plan
        if me.batch is not None:
            self._apply(me.batch)
        if me.error is not None:
            raise me.error
        return me.offered

    def _apply(self, batch: list[_Caller]) -> None:
        """Apply ``batch``, hand what queued meanwhile to its first caller, then answer the batch's others."""
        try:
            self._run(batch)
        except BaseException as exc:  # interrupted applying the batch (an exit), before any answer: nobody waits on
            for caller in batch[1:]:
                caller.error = exc
            raise
        finally:
            with self._lock:
                following, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._busy = bool(following)
                self.sizes[len(batch)] += 1
            if following:
                following[0].batch = following
                following[0].answered.set()
            for caller in batch[1:]:
                caller.answered.set()

    def _run(self, batch: list[_Caller]) -> None:
        if len(batch) > 1:
            try:
                found = self._many([c.plan for c in batch], batch[0].what)
            except TRANSIENT as exc:  # unreachable past the retries: what each caller alone would have heard
                for caller in batch:
                    caller.error = exc
                return
            except Exception:  # one plan's fault, perhaps: each alone below
                pass
            else:
                for caller, offered in zip(batch, found, strict=True):
                    caller.offered = offered
                return
        for caller in batch:
            try:
                caller.offered = self._one(caller.plan, caller.what)
            except BaseException as exc:  # raised in the caller's own thread
                caller.error = exc
