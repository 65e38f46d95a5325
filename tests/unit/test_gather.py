"""Group commit (:mod:`oms.engine.gather`): threads that end attempts at the same time share a transaction, a lone
caller goes alone at once, and each plan keeps its own answer.

The door's tests run on SQLite here and on PostgreSQL by ``tests/integration/test_on_postgres.py``.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.exc import OperationalError

from act import complete_task, fetch_task
from oms import Workflow, get_instance, history, start_workflow, start_workflows
from oms.engine import door
from oms.engine.gather import Gather

from ..conftest import Backend
from .test_batches import FAN


class Applier:
    """Stands in for the store: the first single plan blocks until released, so that others queue behind it."""

    def __init__(self, many_error: BaseException | None = None, bad: object = None) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.singles: list[Any] = []
        self.batches: list[list[Any]] = []
        self.many_error, self.bad = many_error, bad

    def one(self, plan: Any, what: str) -> Any:
        self.singles.append(plan)
        if len(self.singles) == 1:
            self.started.set()
            assert self.release.wait(10)
        if plan is self.bad:
            raise ValueError(f"bad plan {plan}")
        return None if plan == "lost" else [f"offered by {plan}"]

    def many(self, plans: list[Any], what: str) -> list[Any]:
        self.batches.append(list(plans))
        if self.many_error is not None:
            raise self.many_error
        return [None if p == "lost" else [f"offered by {p}"] for p in plans]


def _queue_behind_a_lone_caller(applier: Applier, plans: list[Any]) -> tuple[Gather, dict[Any, Any]]:
    """A lone caller goes first; ``plans`` arrive while its transaction runs; return each plan's answer or error."""
    gather = Gather(applier.one, applier.many)
    answers: dict[Any, Any] = {}

    def end(plan: Any) -> None:
        try:
            answers[plan] = gather.end(plan, "completing a task")
        except BaseException as exc:  # a thread's own, to assert
            answers[plan] = exc

    first = threading.Thread(target=end, args=("first",))
    first.start()
    assert applier.started.wait(10)
    others = [threading.Thread(target=end, args=(p,)) for p in plans]
    for thread in others:
        thread.start()
    while len(gather._queue) < len(plans):  # every one queued behind the transaction under way
        threading.Event().wait(0.005)
    applier.release.set()
    for thread in [first, *others]:
        thread.join(10)
        assert not thread.is_alive()
    return gather, answers


def test_a_lone_caller_applies_its_plan_alone_at_once() -> None:
    applier = Applier()
    applier.release.set()
    gather = Gather(applier.one, applier.many)
    assert gather.end("a", "completing a task") == ["offered by a"]
    assert gather.end("lost", "completing a task") is None
    assert applier.singles == ["a", "lost"] and applier.batches == [] and gather.sizes == Counter({1: 2})


def test_callers_that_arrive_during_a_transaction_share_the_next_one() -> None:
    applier = Applier()
    gather, answers = _queue_behind_a_lone_caller(applier, ["b", "c", "lost", "d"])
    assert applier.singles == ["first"]
    assert len(applier.batches) == 1 and sorted(applier.batches[0]) == ["b", "c", "d", "lost"]
    assert answers == {"first": ["offered by first"], "b": ["offered by b"], "c": ["offered by c"],
                       "d": ["offered by d"], "lost": None}
    assert gather.sizes == Counter({1: 1, 4: 1}) and not gather._busy


def test_a_batch_that_fails_is_applied_plan_by_plan_so_one_bad_plan_costs_only_its_caller() -> None:
    applier = Applier(many_error=RuntimeError("a constraint"), bad="bad")
    _, answers = _queue_behind_a_lone_caller(applier, ["b", "bad", "c"])
    assert isinstance(answers["bad"], ValueError)
    assert answers["b"] == ["offered by b"] and answers["c"] == ["offered by c"]


def test_a_database_unreachable_past_its_retries_is_every_callers_error_and_nobody_waits_on() -> None:
    down = OperationalError("UPDATE", {}, Exception("connection refused"))
    applier = Applier(many_error=down)
    gather, answers = _queue_behind_a_lone_caller(applier, ["b", "c"])
    assert answers["b"] is down and answers["c"] is down and applier.singles == ["first"]
    assert not gather._busy and gather._queue == []
    applier.many_error = None
    assert gather.end("e", "completing a task") == ["offered by e"]  # the next caller is served


def test_a_batch_whose_thread_is_interrupted_answers_everyone_in_it_and_hands_on() -> None:
    stop = KeyboardInterrupt()
    applier = Applier(many_error=stop)
    gather, answers = _queue_behind_a_lone_caller(applier, ["b", "c"])
    assert answers["b"] is stop and answers["c"] is stop
    assert not gather._busy and gather._queue == []


def test_threads_completing_at_once_each_complete_their_own_once(backend: Backend) -> None:
    threads = 8
    Workflow(id="crowd", steps=[{"id": "crowd", "sla": "1h"}, {"id": "crowd_next", "sla": "1h"}]).save()
    ids = start_workflows("crowd", [{"n": n} for n in range(threads * 10)])
    before = Counter(door._door._gather.sizes)

    gate = threading.Barrier(threads)

    def work(worker: int) -> int:
        claimed = [fetch_task("crowd", max_wait=1, worker_id=f"w{worker}") for _ in range(10)]
        gate.wait(10)  # then all complete at once
        for task in claimed:
            assert task is not None
            assert complete_task(task, {"n": task.payload["n"]}, worker_id=f"w{worker}") is True
        return len(claimed)

    with ThreadPoolExecutor(threads) as pool:
        assert sum(pool.map(work, range(threads))) == len(ids)
    results = []
    for instance_id in ids:
        info = get_instance(instance_id)
        assert info.status == "running"
        results.append(info.results["crowd"]["n"])
        kinds = Counter((e.kind, e.step_id) for e in history(instance_id))
        assert kinds[("task.done", "crowd")] == 1 and kinds[("task.queued", "crowd_next")] == 1, kinds
    assert sorted(results) == list(range(len(ids)))
    gathered = door._door._gather.sizes - before
    assert sum(size * n for size, n in gathered.items()) == len(ids)
    assert max(gathered) > 1, f"no completions shared a transaction: {gathered}"


def test_branches_completed_by_threads_at_once_offer_their_join_once(backend: Backend) -> None:
    Workflow(**FAN).save()
    for _ in range(4):
        instance_id = start_workflow("fan", {})
        split = fetch_task("split", max_wait=1, worker_id="w")
        assert split is not None and complete_task(split, {}, worker_id="w")
        branches = [fetch_task("branch", max_wait=1, worker_id=f"w{n}") for n in range(5)]
        assert all(branches)
        gate = threading.Barrier(5)

        def finish(n: int) -> bool:
            gate.wait(10)
            return complete_task(branches[n], {"n": n}, worker_id=f"w{n}")  # type: ignore[arg-type]

        with ThreadPoolExecutor(5) as pool:
            assert list(pool.map(finish, range(5))) == [True] * 5
        kinds = Counter((e.kind, e.step_id) for e in history(instance_id))
        assert kinds[("task.queued", "join")] == 1, kinds
        join = fetch_task("join", max_wait=1, worker_id="w")
        assert join is not None and join.instance_id == instance_id
