"""SLA scanner cost on PostgreSQL (issue: SLA engine).

1. A no-news scan (nothing newly due) on task tables of 10k, 100k and 1M rows, 2%
   of them overdue and already escalated: median and p95 of 30 scans each.
   Then again with the topic paced (recent completions): every scan predicts its
   queue (the predictive yellow light), with no news: its bounds (two partial
   indexes) show no light can move, so the queue is not read. Then the same scan with
   the prediction off, at that moment (the first figure pays for the fresh rows' first
   reads): the difference is what the prediction costs. Then the same with
   the bounds ignored: every scan numbers the oldest 10,000 queued steps, as each
   scan did before the bounds (the price of a scan that must read the queue).
2. One scan that escalates 10,000 fresh breaches (in the 1M-row table), checked
   by counting the escalation rows and the messages on the ``sla_violation`` queue.
3. Detection lateness: a real ``celery beat`` (interval 1 s) and worker on the
   ``oms`` queue; 400 one-step workflows with a 2 s SLA nobody takes, started over
   ~20 s; lateness = when ``task.sla_violated`` was recorded − ``expires_at``.
4. (``--waiting N``, after 1.) People in the loop cost a scan nothing while nothing is due:
   the no-news scan at the largest size, then again with N more instances started, half
   waiting on a signal (a 30-day SLA) and half on a timer (30 days, not due); medians and
   their ratio. The instances are deleted again before 2.

    .venv/bin/python benchmarks/sla_scan.py [--sizes 10000,100000,1000000] [--waiting 10000]
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scratch import create_database, drop_database  # noqa: E402


def _fill(upto: int, have: int, instance_id: str) -> None:
    """Grow the task table to ``upto`` rows: 2% red and done with, 98% green and not yet due."""
    from sqlalchemy import text

    from oms.store.db import transaction

    now = datetime.now(UTC)
    with transaction() as s:
        s.execute(text(
            "INSERT INTO oms_tasks (id, instance_id, workflow_id, step_id, step_index, topic, attempt, failures, lost, "
            "status, payload, created_at, ready_at, warn_at, expires_at, light, sla_check_at) "
            "SELECT 'tk-b' || g, :i, 'bench_scan', 'late', 0, 'late', 1, 0, 0, 'pending', '{}', :now, :now, "
            "CASE WHEN g % 50 = 0 THEN :past ELSE :warn END, CASE WHEN g % 50 = 0 THEN :past ELSE :expire END, "
            "CASE WHEN g % 50 = 0 THEN 'red' ELSE 'green' END, CASE WHEN g % 50 = 0 THEN NULL ELSE :warn END "
            "FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) g"
        ), {"i": instance_id, "now": now, "past": now - timedelta(hours=1), "warn": now + timedelta(days=1),
            "expire": now + timedelta(days=2), "lo": have + 1, "hi": upto})
        s.execute(text("ANALYZE oms_tasks"))


def _pace(n: int) -> None:
    """Give topic ``late`` a recent pace: ``n`` steps finished over the last 5 minutes, so every scan predicts
    its queue (the oldest 10,000 of the table's pending rows), all of it on time: no news."""
    from sqlalchemy import text

    from oms.store.db import transaction

    now = datetime.now(UTC)
    with transaction() as s:
        s.execute(text(
            "INSERT INTO oms_tasks (id, instance_id, workflow_id, step_id, step_index, topic, attempt, failures, lost, "
            "status, payload, created_at, ready_at, warn_at, expires_at, light, started_at, finished_at) "
            "SELECT 'tk-d' || g, 'wf-bench-scan', 'bench_scan', 'late', 0, 'late', 1, 0, 0, 'done', '{}', "
            ":now - g * interval '280 milliseconds' - interval '1 second', "
            ":now - g * interval '280 milliseconds' - interval '1 second', :now, :now + interval '1 hour', 'green', "
            ":now - g * interval '280 milliseconds' - interval '500 milliseconds', :now - g * interval '280 milliseconds' "
            "FROM generate_series(1, CAST(:n AS integer)) g"
        ), {"now": now, "n": n})
        s.execute(text("ANALYZE oms_tasks"))


def _no_news(samples: int = 30) -> tuple[float, float]:
    from oms import scan_sla

    times = []
    for _ in range(samples):
        began = time.perf_counter()
        report = scan_sla()
        times.append((time.perf_counter() - began) * 1000)
        assert report.violations == 0 and report.warnings == 0, report
    return statistics.median(times), statistics.quantiles(times, n=20)[18]


def _queue_read_every_scan() -> tuple[float, float]:
    """The no-news scan with prediction when the bounds never spare the queue's read."""
    from oms.sla import predict

    quiet = predict.quiet
    predict.quiet = lambda *args: False  # type: ignore[assignment]
    try:
        return _no_news()
    finally:
        predict.quiet = quiet


#: The two kinds of instance ``--waiting`` adds: one waiting on a signal, one on a timer; neither due for a month.
WAITING = {"bench_wait": [{"id": "collect_form", "wait_for": "form_submitted", "sla": "30d"}],
           "bench_timer": [{"id": "cooling_off", "sleep": "30d"}]}


def _waiting(n: int) -> tuple[float, float, float]:
    """The no-news scan's median before and after starting ``n`` instances waiting on signals and timers (half
    each, in batches of 1,000 through ``start_workflows``), and again once they are deleted (A/B/A: what the
    moment costs, apart from the rows)."""
    from sqlalchemy import text

    from oms import Workflow, start_workflows
    from oms.store.db import transaction

    for workflow_id, steps in WAITING.items():
        Workflow(id=workflow_id, steps=steps).save()
    before, _ = _no_news()
    for workflow_id, count in zip(WAITING, (n - n // 2, n // 2), strict=True):
        for first in range(0, count, 1000):
            start_workflows(workflow_id, [{"i": i} for i in range(first, min(first + 1000, count))])
    with transaction() as s:
        s.execute(text("ANALYZE oms_tasks"))
        s.execute(text("ANALYZE oms_instances"))
    after, _ = _no_news()
    kinds = list(WAITING)
    with transaction() as s:
        for table in ("oms_events", "oms_tasks"):
            s.execute(text(f"DELETE FROM {table} WHERE instance_id IN "
                           "(SELECT id FROM oms_instances WHERE workflow_id = ANY(:w))"), {"w": kinds})
        s.execute(text("DELETE FROM oms_instances WHERE workflow_id = ANY(:w)"), {"w": kinds})
    with transaction() as s:
        s.execute(text("ANALYZE oms_tasks"))
        s.execute(text("ANALYZE oms_instances"))
    again, _ = _no_news()
    return before, after, again


def _fresh_breaches(n: int, broker_url: str) -> float:
    import redis
    from sqlalchemy import text

    from oms import scan_sla
    from oms.celery.app import current
    from oms.store.db import transaction

    # Paid before the clock, as a worker pays them apart from any one scan: Celery resolving its result backend on
    # a process's first publish (about 80 ms here, reading every installed package's entry points; a worker does it
    # as it starts), and a full collection of this process's 146,000 objects (55 ms) that the collector, one
    # collection short of its threshold, would otherwise run inside a one-scan figure or not, by chance.
    _ = current().backend
    gc.collect()
    now = datetime.now(UTC)
    with transaction() as s:
        s.execute(text(
            "UPDATE oms_tasks SET light = 'yellow', warn_at = :w, expires_at = :e, sla_check_at = :e "
            "WHERE id IN (SELECT id FROM oms_tasks WHERE light = 'green' AND workflow_id = 'bench_scan' LIMIT :n)"
        ), {"w": now - timedelta(seconds=2), "e": now - timedelta(seconds=1), "n": n})
    began = time.perf_counter()
    report = scan_sla()
    elapsed = time.perf_counter() - began
    assert report.violations == n and len(set(report.escalations)) == n, report
    queued = redis.Redis.from_url(broker_url).llen("sla_violation")
    assert queued == n, f"{queued} escalation messages published, expected {n}"
    return elapsed


def _lateness(env: dict[str, str], workflows: int) -> list[float]:
    from sqlalchemy import select

    from oms import Workflow, start_workflow
    from oms.store.db import transaction
    from oms.store.tables import EventRow, TaskRow

    Workflow(id="bench_late", steps=[{"id": "bench_late", "sla": "2s", "warn_at": "1s"}]).save()
    tmp = Path(tempfile.mkdtemp())
    full = {**os.environ, **env, "OMS_SLA_SCAN_INTERVAL": "1", "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "celery", "-A", "oms", "worker", "-Q", "oms", "-c", "2", "-l", "warning",
                          "--without-mingle", "--without-gossip"], env=full, cwd=tmp, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "celery", "-A", "oms", "beat", "-l", "warning", "-s",
                          str(tmp / "schedule")], env=full, cwd=tmp, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        time.sleep(5)
        ids = []
        for i in range(workflows):
            ids.append(start_workflow("bench_late", payload={"i": i}))
            time.sleep(0.05)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with transaction() as s:
                rows = s.execute(
                    select(EventRow.at, TaskRow.expires_at).join(TaskRow, TaskRow.id == EventRow.task_id)
                    .where(EventRow.kind == "task.sla_violated", TaskRow.instance_id.in_(ids))
                ).all()
            if len(rows) == workflows:
                return [(at - expires).total_seconds() for at, expires in rows]
            time.sleep(0.5)
        raise SystemExit(f"only {len(rows)} of {workflows} breaches were recorded in time")
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--breaches", type=int, default=10000)
    parser.add_argument("--late-workflows", type=int, default=400)
    parser.add_argument("--waiting", type=int, default=0, metavar="N",
                        help="also measure the scan with N instances waiting on signals and timers (e.g. 10000)")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/11")
    args = parser.parse_args()

    import redis
    from sqlalchemy import text

    import oms
    from oms import Workflow
    from oms.store.db import dispose_all, transaction

    database_url = create_database(prefix="oms_bench_sla")
    redis.Redis.from_url(args.broker_url).flushdb()
    try:
        oms.configure(database_url=database_url, broker_url=args.broker_url)
        Workflow(id="bench_scan", steps=[{"id": "late", "sla": "1m"}]).save()
        now = datetime.now(UTC)
        instance_id = "wf-bench-scan"
        with transaction() as s:
            s.execute(text(
                "INSERT INTO oms_instances (id, workflow_id, version, status, current_step, payload, results, "
                "created_at, updated_at, light) VALUES (:i, 'bench_scan', 1, 'running', 0, '{}', '{}', :n, :n, 'green')"
            ), {"i": instance_id, "n": now})
        oms.scan_sla()  # saves the escalation workflows once
        have = 0
        print(f"PostgreSQL, {os.cpu_count()} cores; 2% of rows overdue and already escalated")
        for size in (int(x) for x in args.sizes.split(",")):
            began = time.perf_counter()
            _fill(size, have, instance_id)
            have = size
            p50, p95 = _no_news()
            print(f"  {size:>9,} rows (filled in {time.perf_counter() - began:5.1f} s): no-news scan "
                  f"median {p50:.2f} ms, p95 {p95:.2f} ms", flush=True)
        if args.waiting:
            before, after, again = _waiting(args.waiting)
            print(f"  {have:>9,} rows, no-news scan median {before:.2f} ms; with {args.waiting:,} instances waiting "
                  f"on signals and timers (not due): {after:.2f} ms, ratio {after / before:.2f}; "
                  f"deleted again: {again:.2f} ms", flush=True)
        _pace(1000)
        p50, p95 = _no_news()
        print(f"  {have:>9,} rows, topic paced (1,000 finished in 5 min; the scan predicts its queue): no-news scan "
              f"median {p50:.2f} ms, p95 {p95:.2f} ms", flush=True)
        oms.configure(database_url=database_url, broker_url=args.broker_url, predict_window=0)
        off, off95 = _no_news()
        oms.configure(database_url=database_url, broker_url=args.broker_url)
        print(f"  {have:>9,} rows, the same scan with the prediction off (OMS_PREDICT_WINDOW=0), just after: median "
              f"{off:.2f} ms, p95 {off95:.2f} ms; the prediction's own cost {p50 - off:.2f} ms", flush=True)
        p50, p95 = _queue_read_every_scan()
        print(f"  {have:>9,} rows, topic paced, its bounds ignored (every scan numbers its oldest 10,000 queued "
              f"steps): no-news scan median {p50:.2f} ms, p95 {p95:.2f} ms", flush=True)
        elapsed = _fresh_breaches(args.breaches, args.broker_url)
        print(f"  one scan escalating {args.breaches:,} fresh breaches in a {have:,}-row table: {elapsed:.2f} s",
              flush=True)
        dispose_all()
        late = _lateness({"OMS_DATABASE_URL": database_url, "OMS_BROKER_URL": args.broker_url},
                         args.late_workflows)
        q = statistics.quantiles(late, n=100)
        print(f"  detection lateness over {len(late)} breaches (scan interval 1 s): p50 {q[49]:.2f} s, "
              f"p99 {q[98]:.2f} s, max {max(late):.2f} s")
    finally:
        dispose_all()
        drop_database(database_url)


if __name__ == "__main__":
    main()
