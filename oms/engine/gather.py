"""Group commit: what threads of one process ask of the database at the same time shares one statement.

An API process serving eight HTTP workers, or a push worker with a threads pool,
claims and ends many attempts at once, each in its own thread. Alone, each would pay
its own statement and its own commit. Here the first caller goes at once, alone,
exactly as before (no timer: a lone caller waits for nobody); those that arrive while
its statement is under way queue, and when it ends the first of them sends everything
queued as one (ended attempts: :func:`oms.engine.batches.apply_all`, the path of
``complete_tasks``; claims on one topic: ``Store.claim_for``), then hands on. So the
batch grows with the load and costs nothing without it.

Each request is judged on its own as in a batch: a plan that cannot apply (its lease
lost, finished already) gets ``None`` and the others go through. Should a batch fail
for a reason that is not the database being unreachable, each of its requests is sent
again alone, so that one bad request costs only its own caller.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..store.db import TRANSIENT
from .checks import MAX_BATCH

Request = TypeVar("Request")
Answer = TypeVar("Answer")


@dataclass(eq=False)
class _Caller(Generic[Request, Answer]):
    """One thread's request, and then its answer."""

    request: Request
    what: str
    answered: threading.Event = field(default_factory=threading.Event)
    #: Set when this caller is to send a batch (its own request first in it).
    batch: list[_Caller[Request, Answer]] | None = None
    answer: Answer | None = None
    error: BaseException | None = None


class Gather(Generic[Request, Answer]):
    """Sends the requests of concurrent callers in shared statements (one at a time per process): ``one`` sends a
    request alone, ``many`` several at once, answering each in order; ``what`` says what for the retries' log."""

    def __init__(self, one: Callable[[Request, str], Answer],
                 many: Callable[[list[Request], str], list[Answer]]) -> None:
        self._one, self._many = one, many
        self._lock = threading.Lock()
        self._queue: list[_Caller[Request, Answer]] = []
        self._busy = False
        #: How many requests each statement held (1: a lone caller), for the tests.
        self.sizes: Counter[int] = Counter()

    def send(self, request: Request, what: str) -> Answer:
        """Send ``request``, alone or with those of other threads; its answer."""
        me: _Caller[Request, Answer] = _Caller(request, what)
        with self._lock:
            if self._busy:
                self._queue.append(me)
            else:
                self._busy, me.batch = True, [me]
        if me.batch is None:
            me.answered.wait()
            me.answered.clear()  # woken with an answer, or to send a batch that holds this caller's request
        if me.batch is not None:
            self._apply(me.batch)
        if me.error is not None:
            raise me.error
        return me.answer  # type: ignore[return-value]  # set, as no error was

    def _apply(self, batch: list[_Caller[Request, Answer]]) -> None:
        """Send ``batch``, hand what queued meanwhile to its first caller, then answer the batch's others."""
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

    def _run(self, batch: list[_Caller[Request, Answer]]) -> None:
        if len(batch) > 1:
            try:
                found = self._many([c.request for c in batch], batch[0].what)
            except TRANSIENT as exc:  # unreachable past the retries: what each caller alone would have heard
                for caller in batch:
                    caller.error = exc
                return
            except Exception:  # one request's fault, perhaps: each alone below
                pass
            else:
                for caller, answer in zip(batch, found, strict=True):
                    caller.answer = answer
                return
        for caller in batch:
            try:
                caller.answer = self._one(caller.request, caller.what)
            except BaseException as exc:  # raised in the caller's own thread
                caller.error = exc
