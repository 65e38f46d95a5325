"""Pull-worker throughput and wake-up latency on PostgreSQL (issue: pull workers).

Runs, in one go and on the same table:

* engine round trips: P processes loop ``fetch_task`` + ``complete_task`` until N
  queued one-step workflows are done (P = 1, 4, 8);
* the raw claim rate: P processes loop a bare
  ``UPDATE oms_tasks … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1)``
  over N pending rows, autocommit, nothing else;
* batches (``--batch B``, 10 by default; 0 leaves them out): P processes loop
  ``fetch_tasks(max_tasks=B)`` + ``complete_tasks``, against the raw loop claiming
  B rows per statement (``WHERE id IN (SELECT … LIMIT B FOR UPDATE SKIP LOCKED)``);
* wake-up latency: one idle ``fetch_task`` caller, workflows started one at a time;
  latency = when ``fetch_task`` returned − when the step became ready.

    .venv/bin/python benchmarks/pull.py [--steps 3000] [--processes 1,4,8] [--batch 10]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.cpu import postgres_cpu  # noqa: E402
from benchmarks.gate import StartGate  # noqa: E402
from benchmarks.scratch import create_database, drop_database  # noqa: E402


def _configure(database_url: str, broker_url: str) -> None:
    import oms

    oms.configure(database_url=database_url, broker_url=broker_url)


def _engine_worker(database_url: str, broker_url: str, topic: str, start: StartGate, out: mp.Queue,
                   measured: mp.Event) -> None:
    _configure(database_url, broker_url)
    from act import complete_task, fetch_task

    fetch_task("warmup_topic", max_wait=0)  # connect before the clock starts
    start.wait()
    done, last, cpu = 0, time.monotonic(), time.process_time()
    while (task := fetch_task(topic, max_wait="0.5s")) is not None:
        complete_task(task.id)
        done, last = done + 1, time.monotonic()
    out.put((done, last, time.process_time() - cpu))  # the final empty poll's 0.5 s is not throughput
    measured.wait()  # connected until the server's CPU is read


def _batch_worker(database_url: str, broker_url: str, topic: str, batch: int, start: StartGate, out: mp.Queue,
                  measured: mp.Event) -> None:
    _configure(database_url, broker_url)
    from act import complete_tasks, fetch_tasks

    fetch_tasks("warmup_topic", max_tasks=batch, max_wait=0)  # connect before the clock starts
    start.wait()
    done, last, cpu = 0, time.monotonic(), time.process_time()
    while tasks := fetch_tasks(topic, max_tasks=batch, max_wait="0.5s"):
        outcomes = complete_tasks([(task.id, None) for task in tasks])
        assert all(o.ok for o in outcomes), outcomes
        done, last = done + len(tasks), time.monotonic()
    out.put((done, last, time.process_time() - cpu))
    measured.wait()


def _raw_worker(dsn: str, topic: str, batch: int, start: StartGate, out: mp.Queue, measured: mp.Event) -> None:
    import psycopg

    claim = (
        "UPDATE oms_tasks SET status = 'running', started_at = now(), worker_id = %s "
        "WHERE id = (SELECT id FROM oms_tasks WHERE topic = %s AND status = 'pending' "
        "ORDER BY ready_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
    ) if batch == 1 else (
        "UPDATE oms_tasks SET status = 'running', started_at = now(), worker_id = %s "
        "WHERE id IN (SELECT id FROM oms_tasks WHERE topic = %s AND status = 'pending' "
        f"ORDER BY ready_at LIMIT {batch} FOR UPDATE SKIP LOCKED) RETURNING id"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        start.wait()
        done, last, cpu = 0, time.monotonic(), time.process_time()
        while claimed := len(conn.execute(claim, (f"raw:{os.getpid()}", topic)).fetchall()):
            done, last = done + claimed, time.monotonic()
        out.put((done, last, time.process_time() - cpu))
        measured.wait()  # connected until the server's CPU is read


def _run(target, args: tuple, processes: int) -> tuple[float, int, float, float]:  # type: ignore[type-arg]
    """``(seconds, operations, client CPU ms per operation, PostgreSQL CPU ms per operation)``."""
    ctx = mp.get_context("spawn")
    start, out, measured = StartGate(ctx, processes), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=target, args=(*args, start, out, measured)) for _ in range(processes)]
    for p in procs:
        p.start()
    start.open()  # every process imported and connected
    began, server = time.monotonic(), postgres_cpu()
    results = [out.get(timeout=600) for _ in procs]
    server = postgres_cpu() - server
    measured.set()
    for p in procs:
        p.join()
    done = sum(r[0] for r in results)
    # from the start signal to the last completion of any process (monotonic clocks agree across processes)
    return max(r[1] for r in results) - began, done, 1000 * sum(r[2] for r in results) / done, 1000 * server / done


def _queue_steps(workflow: str, n: int) -> None:
    from oms import start_workflow

    for i in range(n):
        start_workflow(workflow, payload={"n": i})


def _raw_rows(database_url: str, topic: str, n: int) -> None:
    """N pending rows on ``topic`` in the same table, inserted directly (no messages)."""
    from sqlalchemy import text

    from oms.store.db import transaction

    now = datetime.now(UTC)
    with transaction() as s:
        iid = f"wf-raw{uuid.uuid4().hex[:8]}"
        s.execute(text(
            "INSERT INTO oms_instances (id, workflow_id, version, status, current_step, payload, results, "
            "created_at, updated_at, light) VALUES (:i, 'raw', 1, 'running', 0, '{}', '{}', :now, :now, 'green')"
        ), {"i": iid, "now": now})
        s.execute(text(
            "INSERT INTO oms_tasks (id, instance_id, workflow_id, step_id, step_index, topic, attempt, failures, lost, "
            "status, payload, created_at, ready_at, warn_at, expires_at, light) "
            "SELECT 'tk-' || :topic || '-' || g, :i, 'raw', 'raw', 0, :topic, 1, 0, 0, 'pending', '{}', :now, :now, :now, :now, "
            "'green' FROM generate_series(1, :n) g"
        ), {"i": iid, "topic": topic, "now": now, "n": n})


def _latency(samples: int) -> list[float]:
    import threading

    from act import complete_task, fetch_task
    from oms import Workflow, start_workflow

    Workflow(id="bench_wake", steps=[{"id": "bench_wake", "sla": "1h"}]).save()
    fetch_task("bench_wake", max_wait=0)
    latencies: list[float] = []

    def produce() -> None:
        for i in range(samples):
            time.sleep(0.03)
            start_workflow("bench_wake", payload={"i": i})

    producer = threading.Thread(target=produce)
    producer.start()
    for _ in range(samples):
        task = fetch_task("bench_wake", max_wait="5s")
        returned = datetime.now(UTC)
        assert task is not None and task.expires_at is not None
        ready = task.expires_at - (Workflow.load("bench_wake").steps[0].sla)
        latencies.append((returned - ready).total_seconds() * 1000)
        complete_task(task.id)
    producer.join()
    return latencies


def _batches(database_url: str, broker_url: str, dsn: str, p: int, steps: int, batch: int) -> None:
    """``fetch_tasks(max_tasks=batch)`` + ``complete_tasks`` against the raw loop claiming ``batch`` rows at once."""
    from oms import Workflow

    topic = f"bench_batch_{p}"
    Workflow(id=topic, steps=[{"id": topic, "sla": "1h"}]).save()
    _queue_steps(topic, steps)
    elapsed, done, client, server = _run(_batch_worker, (database_url, broker_url, topic, batch), p)
    assert done == steps, (done, steps)
    _raw_rows(database_url, f"raw_batch_{p}", steps)
    raw_elapsed, raw_done, raw_client, raw_server = _run(_raw_worker, (dsn, f"raw_batch_{p}", batch), p)
    assert raw_done == steps
    engine, raw = done / elapsed, raw_done / raw_elapsed
    print(f"{f'x{batch}':>9} {engine:>10.0f} {raw:>13.0f} {engine / raw:>6.2f}   {client:.3f} + {server:.3f} |"
          f" {raw_client:.3f} + {raw_server:.3f}   (batches of {batch}: fetch_tasks + complete_tasks | raw claims"
          f" of {batch}; target >= 1.0 at 4 processes)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="queued steps per run")
    parser.add_argument("--processes", default="1,4,8")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10, help="tasks per batch for the batch mode (0: leave it out)")
    args = parser.parse_args()

    import redis

    database_url = create_database(prefix="oms_bench_pull")
    dsn = database_url.replace("postgresql+psycopg", "postgresql")
    redis.Redis.from_url(args.broker_url).flushdb()
    try:
        _configure(database_url, args.broker_url)
        from oms import Workflow

        print(f"steps per run: {args.steps}; PostgreSQL, broker {args.broker_url}; {os.cpu_count()} cores")
        print(f"{'processes':>9} {'engine/s':>10} {'raw claims/s':>13} {'ratio':>6}   CPU ms per operation,"
              " client + PostgreSQL: engine (fetch + complete) | raw claim")
        for p in [int(x) for x in args.processes.split(",")]:
            topic = f"bench_pull_{p}"
            Workflow(id=topic, steps=[{"id": topic, "sla": "1h"}]).save()
            _queue_steps(topic, args.steps)
            elapsed, done, client, server = _run(_engine_worker, (database_url, args.broker_url, topic), p)
            assert done == args.steps, (done, args.steps)
            engine = done / elapsed
            _raw_rows(database_url, f"raw_{p}", args.steps)
            raw_elapsed, raw_done, raw_client, raw_server = _run(_raw_worker, (dsn, f"raw_{p}", 1), p)
            assert raw_done == args.steps
            raw = raw_done / raw_elapsed
            print(f"{p:>9} {engine:>10.0f} {raw:>13.0f} {engine / raw:>6.2f}   {client:.3f} + {server:.3f} |"
                  f" {raw_client:.3f} + {raw_server:.3f}", flush=True)
            if args.batch:
                _batches(database_url, args.broker_url, dsn, p, args.steps, args.batch)
        latencies = _latency(args.latency_samples)
        q = statistics.quantiles(latencies, n=100)
        print(f"wake-up latency over {len(latencies)} steps: p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, "
              f"max {max(latencies):.1f} ms")
    finally:
        from oms.store.db import dispose_all

        dispose_all()
        drop_database(database_url)


if __name__ == "__main__":
    main()
