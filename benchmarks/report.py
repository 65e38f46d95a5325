"""The monthly SLA report on PostgreSQL (issue 21): the rollup of the event log, then the report of a month.

1. **Fill**: N finished steps over November 2026 (4 steps an instance; half the instances
   under a calendar, New York 09:00-17:00 Monday to Friday, half in wall time), written
   straight into the tables as the engine leaves them: per step its task row and its
   ``task.done`` event, a ``task.sla_violated`` event for each late one (about one in
   five), a ``workflow.done`` event per instance. Not timed.
2. **Rollup**: ``oms.ops.sla_rollups.catch_up()`` adds the whole log up (N + N/5 + N/4
   events), in batches of 20,000 events a transaction, as the first report after an
   upgrade would; its time and events per second. A scrape-sized step follows: 10,000
   new events rolled up.
3. **Report**: ``sla_report(2026-11-01, 2026-12-01)`` (the rollups caught up: it reads
   ``oms_sla_rollups`` only), median and max of 5 runs (target: seconds); its counts are
   checked against the tables (steps finished, within SLA, breaches).

    .venv/bin/python benchmarks/report.py                  # 1M steps: run it alone on the machine
    .venv/bin/python benchmarks/report.py --steps 20000    # a quick run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scratch import create_database, drop_database  # noqa: E402

#: Steps per instance, and the step SLA (wall time, or the calendar's working time).
STEPS = 4
SLA_MINUTES = 30
MONTH = 30 * 86400


def _fill(steps: int) -> int:
    """``steps`` finished steps (``steps // 4`` instances, alternately under ``bench_office`` and in wall time); return
    how many were written."""
    from sqlalchemy import text

    from oms.store.db import transaction

    instances = steps // STEPS
    # instance g starts in November at a moment spread over the month; step k is ready 40 min after step k-1;
    # it waits (g*7 + k*13) % 600 s and runs 60 + (g*11 + k*17) % 1800 s: late when that reaches 30 minutes
    start = f"(timestamptz '2026-11-01 00:00:00+00' + (g * {MONTH}.0 / {instances}) * interval '1 second')"

    def ready(k: str) -> str:
        return f"({start} + {k} * interval '40 minutes')"

    def started(k: str) -> str:
        return f"({ready(k)} + ((g * 7 + {k} * 13) % 600) * interval '1 second')"

    def finished(k: str) -> str:
        return f"({started(k)} + (60 + (g * 11 + {k} * 17) % 1800) * interval '1 second')"

    expires = f"({ready('k')} + interval '{SLA_MINUTES} minutes')"
    last = finished(str(STEPS - 1))
    workflow = "CASE WHEN g % 2 = 0 THEN 'bench_office' ELSE 'bench_wall' END"
    calendar = "CASE WHEN g % 2 = 0 THEN 'bench_office' END"
    with transaction() as s:
        s.execute(text(
            "INSERT INTO oms_instances (id, workflow_id, version, status, current_step, payload, results, created_at,"
            " updated_at, finished_at, warn_at, expires_at, light, steps_left, waiting, calendar_id, business_key)"
            f" SELECT 'wf-' || g, {workflow}, 1, 'done', {STEPS - 1}, '{{}}', '{{}}', {start}, {last}, {last},"
            f" {start} + interval '2 hours', {start} + interval '3 hours', 'green', 0, '{{}}', {calendar}, 'F-' || g"
            " FROM generate_series(1, :n) g"), {"n": instances})
        s.execute(text(
            "INSERT INTO oms_tasks (id, instance_id, workflow_id, step_id, step_index, topic, attempt, failures, lost,"
            " status, payload, created_at, ready_at, warn_at, expires_at, light, started_at, finished_at, calendar_id)"
            f" SELECT 'tk-' || g || '-' || k, 'wf-' || g, {workflow}, 'step' || k, k, 'step' || k, 1, 0, 0, 'done',"
            f" '{{}}', {ready('k')}, {ready('k')}, {ready('k')} + interval '24 minutes', {expires},"
            f" CASE WHEN {finished('k')} >= {expires} THEN 'red' ELSE 'green' END, {started('k')}, {finished('k')},"
            f" {calendar} FROM generate_series(1, :n) g, generate_series(0, {STEPS - 1}) k"), {"n": instances})
        s.execute(text(
            "INSERT INTO oms_events (instance_id, task_id, kind, step_id, attempt, at, data)"
            " SELECT instance_id, id, 'task.done', step_id, 1, finished_at, '{}' FROM oms_tasks ORDER BY finished_at"))
        s.execute(text(
            "INSERT INTO oms_events (instance_id, task_id, kind, step_id, attempt, at, data)"
            " SELECT instance_id, id, 'task.sla_violated', step_id, 1, expires_at, '{}' FROM oms_tasks"
            " WHERE light = 'red' ORDER BY expires_at"))
        s.execute(text(
            "INSERT INTO oms_events (instance_id, kind, at, data)"
            " SELECT id, 'workflow.done', finished_at, '{}' FROM oms_instances ORDER BY finished_at"))
    with transaction() as s:
        s.execute(text("ANALYZE"))
    return instances * STEPS


def _counted() -> tuple[int, int, int]:
    """What the report of November must say, counted from the task table: steps finished in November, of them
    within their SLA, and breaches whose deadline passed in November."""
    from sqlalchemy import text

    from oms.store.db import transaction

    with transaction() as s:
        return s.execute(text(
            "SELECT count(*) FILTER (WHERE finished_at < '2026-12-01'),"
            " count(*) FILTER (WHERE finished_at < '2026-12-01' AND finished_at < expires_at),"
            " count(*) FILTER (WHERE light = 'red' AND expires_at < '2026-12-01') FROM oms_tasks")).one()._tuple()


def _more_events(count: int) -> None:
    """``count`` more ``task.done`` events of steps already counted (what a busy minute adds)."""
    from sqlalchemy import text

    from oms.store.db import transaction

    with transaction() as s:
        s.execute(text(
            "INSERT INTO oms_events (instance_id, task_id, kind, step_id, attempt, at, data)"
            " SELECT instance_id, id, 'task.done', step_id, 1, finished_at, '{}' FROM oms_tasks LIMIT :n"),
            {"n": count})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000, help="finished steps in the month (4 an instance)")
    parser.add_argument("--samples", type=int, default=5, help="reports timed")
    args = parser.parse_args()

    import oms
    from oms import Calendar, Workflow

    database_url = create_database(prefix="oms_bench_report")
    try:
        oms.configure(database_url=database_url, broker_url="filesystem://")
        Calendar(id="bench_office", timezone="America/New_York", hours={"mon-fri": "09:00-17:00"}).save()
        steps = [{"id": f"step{k}", "sla": f"{SLA_MINUTES}m"} for k in range(STEPS)]
        Workflow(id="bench_office", calendar="bench_office", steps=steps).save()
        Workflow(id="bench_wall", steps=steps).save()
        began = time.perf_counter()
        written = _fill(args.steps)
        print(f"PostgreSQL; {os.cpu_count()} cores; filled {written} steps in "
              f"{time.perf_counter() - began:.1f} s", flush=True)

        from oms.ops.sla_report import sla_report
        from oms.ops.sla_rollups import catch_up

        began = time.perf_counter()
        events = catch_up()
        took = time.perf_counter() - began
        print(f"rollup of the log: {events} events in {took:.1f} s, {events / took:,.0f} events/s", flush=True)

        timings = []
        report = None
        for _ in range(args.samples):
            began = time.perf_counter()
            report = sla_report(date(2026, 11, 1), date(2026, 12, 1))
            timings.append(time.perf_counter() - began)
        assert report is not None
        steps_rows = [row for row in report.rows if row.step_id is not None]
        finished = sum(row.finished for row in steps_rows)
        breaches = sum(row.breaches for row in steps_rows)
        within = sum(row.within_sla for row in steps_rows)
        assert (finished, within, breaches) == _counted(), ((finished, within, breaches), _counted())
        print(f"report of November over {finished} finished steps ({len(report.rows)} rows, {breaches} breaches, "
              f"{within / finished:.1%} within SLA): median {statistics.median(timings) * 1000:.0f} ms, max "
              f"{max(timings) * 1000:.0f} ms (target: seconds)", flush=True)

        _more_events(10_000)
        began = time.perf_counter()
        events = catch_up()
        print(f"then {events} new events rolled up in {(time.perf_counter() - began) * 1000:.0f} ms", flush=True)
    finally:
        from oms.store.db import dispose_all

        dispose_all()
        drop_database(database_url)


if __name__ == "__main__":
    main()
