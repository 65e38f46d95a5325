"""People in the loop on PostgreSQL: what a claim, a completion with a form, and a signal cost, one caller.

For each of ``--n`` instances (one process, sequential calls, the clock of each call):

1. ``oms.claim`` of a human step (one statement), then ``complete_task(..., worker_id=person)`` with a result the
   step's JSON Schema checks; beside it, the pull worker's round trip on a machine step of the same shape
   (``fetch_task`` + ``complete_task``), the engine's cheapest way to end a step;
2. ``oms.signal_by_key`` ending a waiting step (one transaction), and ``oms.signal`` by instance id.

Medians and p95 in milliseconds. Run alone on the machine:

    .venv/bin/python benchmarks/people.py [--n 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scratch import create_database, drop_database  # noqa: E402

FORM = {"type": "object", "required": ["inspector"],
        "properties": {"inspector": {"type": "string"}, "visit_on": {"type": "string", "format": "date"}}}


def _timed(calls: list[Callable[[], object]]) -> tuple[float, float]:
    """Median and p95 of the calls, in milliseconds."""
    times = []
    for call in calls:
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def run(n: int) -> None:
    import oms
    from act import complete_task, fetch_task

    oms.Workflow(id="bench_human", steps=[{"id": "assign_inspector", "sla": "2d",  # type: ignore[list-item]
                                           "assign": {"groups": ["inspectors"]}, "form": FORM}]).save()
    oms.Workflow(id="bench_machine", steps=[{"id": "validate", "sla": "2d"}]).save()  # type: ignore[list-item]
    oms.Workflow(id="bench_wait", steps=[{"id": "collect_form", "sla": "5d",  # type: ignore[list-item]
                                          "wait_for": "form_submitted"}]).save()
    oms.create_user("alice", ["inspectors"])
    human = [oms.start_workflow("bench_human", {"n": i}) for i in range(n)]
    oms.start_workflows("bench_machine", [{"n": i} for i in range(n)])
    waiting = [oms.start_workflow("bench_wait", {"n": i}, business_key=f"F-{i}") for i in range(2 * n)]
    ids = [item.task_id for item in oms.inbox("alice", limit=n)]
    result = {"inspector": "alice", "visit_on": "2026-12-10"}

    claim = _timed([lambda t=t: oms.claim(t, "alice") for t in ids])
    complete = _timed([lambda t=t: complete_task(t, result, worker_id="alice") for t in ids])
    fetched: list[str] = []

    def fetch() -> None:
        task = fetch_task("validate", max_wait=0, worker_id="w")
        assert task is not None
        fetched.append(task.id)

    pull_fetch = _timed([fetch] * n)
    pull_complete = _timed([lambda t=t: complete_task(t, {"valid": True}, worker_id="w") for t in list(fetched)])
    by_key = _timed([lambda i=i: oms.signal_by_key("bench_wait", f"F-{i}", "form_submitted", {"n": i})
                     for i in range(n)])
    by_id = _timed([lambda w=w: oms.signal(w, "form_submitted", {"n": 0}) for w in waiting[n:]])
    assert all(oms.get_instance(i).status == "done" for i in human[:3] + waiting[:3])
    print(f"n = {n} each, PostgreSQL, one caller; milliseconds (median / p95)")
    print(f"  claim (one statement)                      {claim[0]:6.2f} / {claim[1]:6.2f}")
    print(f"  complete a human step (form checked)       {complete[0]:6.2f} / {complete[1]:6.2f}")
    print(f"  pull: fetch_task                           {pull_fetch[0]:6.2f} / {pull_fetch[1]:6.2f}")
    print(f"  pull: complete_task                        {pull_complete[0]:6.2f} / {pull_complete[1]:6.2f}")
    print(f"  claim + complete / fetch + complete        {(claim[0] + complete[0]) / (pull_fetch[0] + pull_complete[0]):6.2f}")
    print(f"  signal_by_key (ends the step)              {by_key[0]:6.2f} / {by_key[1]:6.2f}")
    print(f"  signal by instance id                      {by_id[0]:6.2f} / {by_id[1]:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    import oms

    url = create_database()
    try:
        oms.configure(database_url=url, broker_url=args.broker_url)
        run(args.n)
    finally:
        from oms.store.db import dispose_all

        dispose_all()
        drop_database(url)


if __name__ == "__main__":
    main()
