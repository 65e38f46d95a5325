#!/usr/bin/env python
"""Starting workflows: ``start_workflow`` against a bare ``apply_async`` of the same chain, and ``start_workflows``.

In one process, on PostgreSQL and Redis, no worker running (the messages pile up
in a flushed Redis database):

* ``start_workflow``: record the instance (one statement) and publish its chain;
* bare: ``compile_chain(app, workflow, id).apply_async()``, the same four-step chain
  as a plain Celery canvas, nothing recorded;
* ``start_workflows`` of ``--batch`` payloads: one statement, then the first steps
  published through one producer.

The two single-start loops alternate ``--rounds`` times; the medians are compared.

    .venv/bin/python benchmarks/starts.py [--starts 2000] [--batch 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scratch import create_database, drop_database  # noqa: E402

STEPS = ("start_a", "start_b", "start_c", "start_d")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(label: str, n: int, action: object) -> tuple[float, float]:
    """``(per second, CPU ms each)`` of ``n`` calls of ``action(i)``."""
    began, cpu = time.perf_counter(), _cpu()
    for i in range(n):
        action(i)  # type: ignore[operator]
    elapsed, used = time.perf_counter() - began, _cpu() - cpu
    print(f"  {label:<28} {n / elapsed:8.0f}/s   {1000 * used / n:6.3f} ms CPU each", flush=True)
    return n / elapsed, 1000 * used / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=2000, help="single starts per round (default 2000)")
    parser.add_argument("--batch", type=int, default=1000, help="payloads per start_workflows call (default 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/11", help="Redis, FLUSHED before each round")
    args = parser.parse_args()

    import redis

    import oms
    from oms import Workflow, start_workflow, start_workflows
    from oms.celery.compiler import compile_chain

    database_url = create_database(prefix="oms_bench_starts")
    broker = redis.Redis.from_url(args.broker_url)
    try:
        oms.configure(database_url=database_url, broker_url=args.broker_url)
        workflow = Workflow(id="bench_starts", steps=[{"id": step, "sla": "1h"} for step in STEPS])
        workflow.save()
        start_workflow("bench_starts", {"n": -1})  # connect, prepare, cache the definition
        compile_chain(oms.app, workflow, f"wf-{uuid.uuid4().hex}").apply_async()
        engine, bare, bulk = [], [], []
        for round_ in range(1, args.rounds + 1):
            broker.flushdb()
            print(f"round {round_}", flush=True)
            engine.append(_timed("start_workflow", args.starts, lambda i: start_workflow("bench_starts", {"n": i})))
            broker.flushdb()
            bare.append(_timed("bare chain apply_async", args.starts,
                               lambda i: compile_chain(oms.app, workflow, f"wf-{uuid.uuid4().hex}").apply_async()))
            broker.flushdb()
            payloads = [{"n": i} for i in range(args.batch)]
            rate, cpu = _timed(f"start_workflows x{args.batch}", 1, lambda i: start_workflows("bench_starts", payloads))
            bulk.append((rate * args.batch, cpu / args.batch))
            print(f"  {'= start_workflows':<28} {rate * args.batch:8.0f} instances/s", flush=True)
        e, b = statistics.median(r for r, _ in engine), statistics.median(r for r, _ in bare)
        print(f"\nmedian of {args.rounds}: start_workflow {e:.0f}/s ({statistics.median(c for _, c in engine):.3f} ms CPU),"
              f" bare apply_async {b:.0f}/s ({statistics.median(c for _, c in bare):.3f} ms CPU):"
              f" ratio {e / b:.2f} (target >= 0.5)")
        print(f"start_workflows of {args.batch}: {statistics.median(r for r, _ in bulk):.0f} instances/s"
              f" ({statistics.median(c for _, c in bulk):.3f} ms CPU each; target >= 2000/s)")
    finally:
        broker.flushdb()
        from oms.store.db import dispose_all

        dispose_all()
        drop_database(database_url)


if __name__ == "__main__":
    main()
