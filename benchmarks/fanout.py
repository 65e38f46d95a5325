#!/usr/bin/env python
"""A fan-out of 100 no-op branches and their join, against a Celery chord of 100 no-op tasks and its callback.

One ``celery -A oms worker`` (prefork, concurrency 2) serves both: the engine's
branches, join and map items (``fanout_tasks.py``), and the chord's tasks, with
the Redis result backend a chord needs (``chord_config.py``). Engine and chord runs
alternate ``--rounds`` times; each is timed from the start (``start_workflow``, or
the chord's ``apply_async``) until the join's handler (the chord's callback) has
run, which both signal the same way (a Redis ``INCR`` the benchmark polls); the engine's
fan-out runs twice a round, one branch to a message and ``--chunk`` to a message. Also: the CPU
per branch of the engine (worker, PostgreSQL, Redis, this process), and a map over
1,000 items with its join, one item to a message and ``--chunk`` to a message
(alternating, 3 rounds each): their ratio is what chunks gain.

    .venv/bin/python benchmarks/fanout.py [--branches 100] [--rounds 5] [--items 1000] [--chunk 25]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scratch import create_database, drop_database  # noqa: E402
from benchmarks.throughput import Worker, cpu_snapshot, log  # noqa: E402

BROKER = "redis://127.0.0.1:6379/13"
RESULTS = "redis://127.0.0.1:6379/14"


def _until(done: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.002)


def _engine(workflow: str, payload: dict[str, object], worker: Worker) -> tuple[float, dict[str, float]]:
    from benchmarks.fanout_tasks import JOIN_DONE, counter
    from oms import get_instance, start_workflow

    before = int(counter().get(JOIN_DONE) or 0)
    cpu = cpu_snapshot(worker.pid)
    began = time.perf_counter()
    instance_id = start_workflow(workflow, payload)
    _until(lambda: int(counter().get(JOIN_DONE) or 0) > before)  # the join's handler ran, as the chord's callback
    elapsed = time.perf_counter() - began
    _until(lambda: get_instance(instance_id).status == "done")
    after = cpu_snapshot(worker.pid)
    return elapsed, {k: after[k] - cpu[k] for k in cpu}


def _chord(branches: int) -> float:
    from celery import chord

    from benchmarks.fanout_tasks import CHORD_DONE, CHORD_QUEUE, chord_callback, chord_noop, counter

    before = int(counter().get(CHORD_DONE) or 0)
    began = time.perf_counter()
    result = chord([chord_noop.s(i).set(queue=CHORD_QUEUE) for i in range(branches)],
                   chord_callback.s().set(queue=CHORD_QUEUE)).apply_async()
    _until(lambda: int(counter().get(CHORD_DONE) or 0) > before)
    elapsed = time.perf_counter() - began
    result.forget()  # and let go of its subscription now, not at interpreter exit
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--branches", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=25,
                        help="the chunked map's items, and the chunked fan-out's branches, per message")
    args = parser.parse_args()
    args.pool, args.concurrency, args.loglevel = "prefork", 2, "warning"

    import redis

    database_url = create_database(prefix="oms_bench_fanout")
    for url in (BROKER, RESULTS):
        redis.Redis.from_url(url).flushdb()
    workdir = Path(tempfile.mkdtemp(prefix="oms-bench-fanout-"))
    os.environ.update(OMS_DATABASE_URL=database_url, OMS_BROKER_URL=BROKER, OMS_HOME=str(workdir / ".oms"),
                      OMS_BENCH_COUNTER_URL=BROKER, OMS_BENCH_RESULT_BACKEND=RESULTS,
                      CELERY_CONFIG_MODULE="benchmarks.chord_config")
    import oms
    from oms import Workflow

    oms.app.conf.result_backend = RESULTS
    for workflow, chunk in (("bench_fanout", 1), ("bench_fanout_chunked", args.chunk)):
        branches = [{"id": f"branch{i}", "topic": "bench_branch", "sla": "1h", "after": [], "chunk": chunk}
                    for i in range(args.branches)]
        Workflow(id=workflow, steps=[*branches, {"id": "join", "topic": "bench_join", "sla": "1h",
                                                 "after": [b["id"] for b in branches]}]).save()
    for workflow, chunk in (("bench_map", 1), ("bench_map_chunked", args.chunk)):
        Workflow(id=workflow, steps=[{"id": "each", "topic": "bench_branch", "sla": "1h", "map": "payload.items",
                                      "chunk": chunk}, {"id": "join", "topic": "bench_join", "sla": "1h"}]).save()
    worker = Worker("fanout", ["bench_branch", "bench_join", "bench_chord"], "benchmarks.fanout_tasks", args, workdir)
    try:
        _engine("bench_fanout", {}, worker)  # warm-up, every side
        _engine("bench_fanout_chunked", {}, worker)
        _chord(args.branches)
        fanouts: dict[str, list[tuple[float, dict[str, float]]]] = {"bench_fanout": [], "bench_fanout_chunked": []}
        chords = []
        for round_ in range(1, args.rounds + 1):
            for workflow, runs in fanouts.items():
                runs.append(_engine(workflow, {}, worker))
            chords.append(_chord(args.branches))
            log(f"round {round_}: engine fan-out + join {1000 * fanouts['bench_fanout'][-1][0]:.0f} ms, "
                f"{args.chunk} to a message {1000 * fanouts['bench_fanout_chunked'][-1][0]:.0f} ms, "
                f"chord {1000 * chords[-1]:.0f} ms")
        c = statistics.median(chords)
        print(f"\n{args.branches} branches and a join, median of {args.rounds}: Celery chord {1000 * c:.0f} ms")
        for runs, what in zip(fanouts.values(), ("one branch", f"{args.chunk} branches"), strict=True):
            e = statistics.median(s for s, _ in runs)
            parts = {k: statistics.median(cpu[k] for _, cpu in runs) * 1000 / (args.branches + 1) for k in runs[0][1]}
            print(f"engine, {what} to a message: {1000 * e:.0f} ms; engine / chord time = {e / c:.2f} (target <= 1);"
                  " CPU ms per branch: " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
                  + f" (sum {sum(parts.values()):.2f})")
        maps: dict[str, list[tuple[float, dict[str, float]]]] = {"bench_map": [], "bench_map_chunked": []}
        for _ in range(3):
            for workflow, runs in maps.items():
                runs.append(_engine(workflow, {"items": list(range(args.items))}, worker))
        rates = {}
        for (workflow, runs), what in zip(maps.items(), ("one item", f"{args.chunk} items"), strict=True):
            seconds = statistics.median(s for s, _ in runs)
            rates[workflow] = args.items / seconds
            parts = {k: statistics.median(cpu[k] for _, cpu in runs) * 1000 / args.items for k in runs[0][1]}
            print(f"map over {args.items} items and a join, {what} to a message, median of 3: {seconds:.2f} s "
                  f"({rates[workflow]:.0f} items/s); CPU ms per item: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()) + f" (sum {sum(parts.values()):.2f})")
        print(f"chunked map / map, items per second: {rates['bench_map_chunked'] / rates['bench_map']:.2f} "
              "(target >= 2)")
    finally:
        worker.stop()
        from oms.store.db import dispose_all

        dispose_all()
        drop_database(database_url)


if __name__ == "__main__":
    main()
