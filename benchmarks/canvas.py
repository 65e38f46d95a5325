#!/usr/bin/env python
"""A shop's own Celery tasks under the engine: chains tracked with ``oms.track``, and the same tasks as steps.

All on one shop app with the engine attached (``benchmarks/shop_noop.py``: ``Celery("shopbench")``,
four no-op tasks, each on its own queue), real ``celery -A benchmarks.shop_noop worker``
subprocesses (``-P prefork -c 2 --without-mingle --without-gossip``), N workflows per run,
modes alternating within each round; medians of the rounds are compared.

**Chains** (``--only chains``): N chains of the 4 tasks, timed from the first publish
until the last task of all N has ``INCR``\\ ed a Redis counter:

- *untracked*: ``chain(...).apply_async()``, no result backend;
- *tracked*: ``oms.track(chain(...), workflow="bench_canvas")``, no result backend; also
  timed until the engine's database shows all N instances ``done`` (the figure the
  targets use: a tracked chain is finished when it is recorded);
- *sqlbackend*: ``chain(...).apply_async()`` with Celery's SQLAlchemy result backend on
  the same PostgreSQL database (``db+postgresql+psycopg://…``) and ``task_track_started``:
  what a shop runs today to see its tasks' states in its database;
- *engine*: N instances of the engine's 4-step workflow of topic handlers (``oms.start_workflow``,
  ``benchmarks/noop_handlers.py``), timed until the database shows them ``done``, on a worker
  with ``--engine-pool`` (default ``threads``, ``--engine-concurrency`` 8: its threads' single
  completions share transactions, the group commit) — the engine against what the SQL-backend
  chain gives a shop (issue 23's ``throughput.py`` target, measured here, where that chain is).

The untracked and SQL-backend workers import the attached engine too (it is in the
shop's app module), so they pay its signal receivers for tasks it does not track: what
attaching costs a shop's untracked work is part of the comparison.

*One fresh worker per mode and round.* The SQL-backend mode needs a worker configured
otherwise (backend, ``task_track_started``, read when the worker starts), and two workers
on the same queues would share the work. So each run starts its own worker, warms it up
with ``--warmup`` untimed chains, is measured, and stops it: every mode gets an
identically started, identically warmed worker, alone on the machine. The benchmark
process, which publishes, is set to the mode's backend and ``task_track_started`` too.

**Steps** (``--only steps``): the same 4 tasks as ``"task"`` steps of a workflow
(``{"id": "s1", "task": "shopbench.noop1", "sla": "1h"}`` …) against the engine's own
topic handlers (``benchmarks/noop_handlers.py``: ``@subscribe`` no-ops on 4 topics), N
instances started with ``oms.start_workflow``, timed until all N are ``done`` in the
database. Both run on ONE worker kept up for all rounds (the same app, configuration,
pool and warm-up; it consumes the tasks' queues and the topics' queues, and only one
side has work at a time), as ``throughput.py`` does.

Targets (ratio of workflows/s, median of the rounds' ratios): tracked ≥ 0.9× the SQL
result backend and ≥ 0.7× untracked; task steps ≥ 0.95× topic handlers; the engine on
the threads pool ≥ 1.3× the SQL result backend.

Usage (from the repository root)::

    .venv/bin/python benchmarks/canvas.py                      # 3 rounds of 1000, chains then steps
    .venv/bin/python benchmarks/canvas.py --only steps --n 200 --rounds 1

Needs PostgreSQL (trust auth for ``postgres`` on 127.0.0.1:5432) and Redis; creates a
scratch database ``oms_bench_<hex>`` and drops it at the end; FLUSHES the broker's Redis
database (default ``redis://127.0.0.1:6379/9``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.scratch import POSTGRES_ADMIN, create_database, drop_database  # noqa: E402
from benchmarks.throughput import (  # noqa: E402
    _ALIVE,
    _INTERRUPTED,
    BenchmarkError,
    RunResult,
    State,
    Worker,
    _interrupt,
    _jsonable,
    _wait_until,
    code_version,
    cpu_per_workflow,
    cpu_snapshot,
    log,
)

DEFAULT_BROKER = "redis://127.0.0.1:6379/9"
CHAIN_MODES = ("untracked", "tracked", "sqlbackend", "engine")
STEP_MODES = ("handlers", "steps")
TRACKED_WORKFLOW = "bench_canvas"
STEPS_WORKFLOW = "bench_task_steps"
HANDLERS_WORKFLOW = "bench_noop"
#: (name, numerator, denominator, target) of each comparison
TARGETS = (
    ("tracked / sqlbackend", "tracked", "sqlbackend", 0.9),
    ("tracked / untracked", "tracked", "untracked", 0.7),
    ("task steps / topic handlers", "steps", "handlers", 0.95),
    ("engine / sqlbackend", "engine", "sqlbackend", 1.3),
)


def _tracker() -> Callable[..., str]:
    """``oms.track``, or a clear error when this checkout predates it."""
    import oms

    track = getattr(oms, "track", None)
    if track is None:
        raise BenchmarkError(
            "oms.track is missing from this checkout (it comes with the track branch): merge main once it has it, "
            "or leave the tracked mode out with --chain-modes untracked,sqlbackend"
        )
    return track  # type: ignore[no-any-return]


def _sql_rows(state: State, status: str) -> int:
    """Rows of Celery's SQLAlchemy result backend in ``status`` (0 before its table exists)."""
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    try:
        with state.db.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM celery_taskmeta WHERE status = :s"),
                                    {"s": status}).scalar_one())
    except ProgrammingError:
        return 0


def _mode_settings(mode: str, result_backend: str) -> dict[str, str]:
    """The shop app's environment for ``mode`` (read by shop_noop when its worker imports it)."""
    if mode == "sqlbackend":
        return {"SHOP_RESULT_BACKEND": result_backend, "SHOP_TRACK_STARTED": "1"}
    return {"SHOP_RESULT_BACKEND": "", "SHOP_TRACK_STARTED": ""}


# -- one run -----------------------------------------------------------------------------


def run_chains(
    mode: str, n: int, args: argparse.Namespace, state: State, worker: Worker, label: str
) -> RunResult:
    """``n`` chains in ``mode``, timed until the counter shows all (and, tracked, until the engine does)."""
    from benchmarks.shop_noop import COUNTER_KEY, build_chain

    track = _tracker() if mode == "tracked" else None
    state.counter.delete(COUNTER_KEY)
    done0, failed0 = state.count("done", TRACKED_WORKFLOW), state.count("failed", TRACKED_WORKFLOW)
    success0 = _sql_rows(state, "SUCCESS") if mode == "sqlbackend" else 0
    worker.sampler.take()
    cpu0 = cpu_snapshot(worker.pid)
    log(f"{label}: publishing {n} chains of 4 no-op tasks")
    started = time.perf_counter()
    for i in range(n):
        if track is not None:
            track(build_chain(i), workflow=TRACKED_WORKFLOW)
        else:
            build_chain(i).apply_async()
        if i % 500 == 499:
            worker.check_alive()
    enqueued = time.perf_counter() - started

    def no_failures() -> None:
        if track is not None and state.count("failed", TRACKED_WORKFLOW) > failed0:
            raise BenchmarkError(f"tracked instance(s) of {TRACKED_WORKFLOW} failed; see oms_instances.error")

    counted, _ = _wait_until(label, n, lambda: int(state.counter.get(COUNTER_KEY) or 0), worker, started,
                             args.timeout, args.stall, no_failures)
    elapsed = counted
    if track is not None:
        elapsed, _ = _wait_until(f"{label} (engine)", n, lambda: state.count("done", TRACKED_WORKFLOW) - done0,
                                 worker, started, args.timeout, args.stall, no_failures)
    result = RunResult(mode, n, elapsed, enqueued, memory=worker.sampler.take())
    result.cpu_ms = cpu_per_workflow(cpu0, cpu_snapshot(worker.pid), n)
    if track is not None:
        result.extra.update(counter_seconds=round(counted, 3), counter_rate=round(n / counted, 1))
    if mode == "sqlbackend":
        # a check that the backend did write: each task's row ends SUCCESS (the last one just after the counter)
        deadline = time.monotonic() + 10
        while (rows := _sql_rows(state, "SUCCESS") - success0) < 4 * n and time.monotonic() < deadline:
            time.sleep(0.2)
        result.extra["backend_success_rows_per_chain"] = round(rows / n, 2)
    return result


def run_steps(mode: str, n: int, args: argparse.Namespace, state: State, worker: Worker, label: str) -> RunResult:
    """``n`` instances of the task-step or the topic-handler workflow, timed until all are done in the database."""
    from oms import start_workflow

    workflow = STEPS_WORKFLOW if mode == "steps" else HANDLERS_WORKFLOW
    done0, failed0 = state.count("done", workflow), state.count("failed", workflow)
    worker.sampler.take()
    cpu0 = cpu_snapshot(worker.pid)
    log(f"{label}: starting {n} instances of {workflow}")
    started = time.perf_counter()
    for i in range(n):
        start_workflow(workflow, {"n": i})
        if i % 500 == 499:
            worker.check_alive()
    enqueued = time.perf_counter() - started

    def no_failures() -> None:
        if state.count("failed", workflow) > failed0:
            raise BenchmarkError(f"instance(s) of {workflow} failed; see oms_instances.error")

    elapsed, _ = _wait_until(label, n, lambda: state.count("done", workflow) - done0, worker, started,
                             args.timeout, args.stall, no_failures)
    result = RunResult(mode, n, elapsed, enqueued, memory=worker.sampler.take())
    result.cpu_ms = cpu_per_workflow(cpu0, cpu_snapshot(worker.pid), n)
    return result


def _report(result: RunResult) -> None:
    extra = f", counter reached in {result.extra['counter_seconds']:.1f} s" if "counter_seconds" in result.extra else ""
    log(f"  {result.kind}: {result.instances} in {result.seconds:.1f} s = {result.rate:.1f}/s "
        f"(published in {result.enqueue_seconds:.1f} s{extra})")


# -- the two measurements ----------------------------------------------------------------


def chains(args: argparse.Namespace, state: State, workdir: Path, result_backend: str) -> dict[str, list[RunResult]]:
    """The chain modes alternating ``--rounds`` times, each run on a worker of its own (see the docstring)."""
    from benchmarks import shop_noop
    from benchmarks.noop_handlers import TOPICS

    modes = args.chain_modes
    if "tracked" in modes:
        _tracker()  # fail before any run, not after the first rounds
    runs: dict[str, list[RunResult]] = {mode: [] for mode in modes}
    for round_ in range(1, args.rounds + 1):
        for mode in modes:
            settings = _mode_settings(mode, result_backend)
            shop_noop.configure(settings["SHOP_RESULT_BACKEND"], settings["SHOP_TRACK_STARTED"] == "1")
            run = run_chains
            if mode == "engine":
                run = run_engine
                worker = Worker(f"chains-{mode}-{round_}", list(TOPICS), "benchmarks.noop_handlers",
                                argparse.Namespace(**{**vars(args), "pool": args.engine_pool,
                                                      "concurrency": args.engine_concurrency}),
                                workdir, app="benchmarks.shop_noop", env=settings)
            else:
                worker = Worker(f"chains-{mode}-{round_}", list(shop_noop.QUEUES), "benchmarks.shop_noop", args,
                                workdir, app="benchmarks.shop_noop", env=settings)
            try:
                if args.warmup > 0:
                    run(mode, args.warmup, args, state, worker, f"{mode} warm-up")
                result = run(mode, args.n, args, state, worker, f"{mode} (round {round_})")
            finally:
                worker.stop()
            _report(result)
            runs[mode].append(result)
    shop_noop.configure(None, False)
    return runs


def run_engine(mode: str, n: int, args: argparse.Namespace, state: State, worker: Worker, label: str) -> RunResult:
    """The engine mode: the topic handlers' workflow, as :func:`run_steps` runs it, reported as ``engine``."""
    result = run_steps("handlers", n, args, state, worker, label)
    result.kind = mode
    return result


def steps(args: argparse.Namespace, state: State, workdir: Path) -> dict[str, list[RunResult]]:
    """Task steps and topic handlers alternating ``--rounds`` times on one worker."""
    from benchmarks import shop_noop
    from benchmarks.noop_handlers import TOPICS

    runs: dict[str, list[RunResult]] = {mode: [] for mode in STEP_MODES}
    worker = Worker("steps", [*shop_noop.QUEUES, *TOPICS], "benchmarks.noop_handlers", args, workdir,
                    app="benchmarks.shop_noop", env=_mode_settings("steps", ""))
    try:
        if args.warmup > 0:
            for mode in STEP_MODES:
                run_steps(mode, args.warmup, args, state, worker, f"{mode} warm-up")
        for round_ in range(1, args.rounds + 1):
            for mode in STEP_MODES:
                result = run_steps(mode, args.n, args, state, worker, f"{mode} (round {round_})")
                _report(result)
                runs[mode].append(result)
    finally:
        worker.stop()
    return runs


def save_workflows() -> None:
    from benchmarks import shop_noop
    from benchmarks.noop_handlers import TOPICS
    from oms import Workflow

    Workflow(id=HANDLERS_WORKFLOW, steps=[{"id": topic, "sla": "1h"} for topic in TOPICS]).save()
    Workflow(id=STEPS_WORKFLOW, steps=[{"id": f"s{i}", "task": name, "sla": "1h"}
                                       for i, name in enumerate(shop_noop.TASK_NAMES, start=1)]).save()


# -- the summary -------------------------------------------------------------------------


def summarize(args: argparse.Namespace, runs: dict[str, list[RunResult]]) -> dict[str, Any]:
    """Per-round figures, medians, and each target whose two sides ran: the median of the rounds' ratios."""
    print()
    engine = f" (the engine mode: {args.engine_pool}, {args.engine_concurrency})" if "engine" in runs else ""
    print(f"== canvas: {args.n} workflows of 4 no-op tasks per run, prefork concurrency {args.concurrency}{engine}, "
          f"{args.rounds} alternating rounds")
    for round_ in range(args.rounds):
        parts = []
        for mode, results in runs.items():
            r = results[round_]
            counted = f" (counter {r.extra['counter_rate']:.1f}/s)" if "counter_rate" in r.extra else ""
            parts.append(f"{mode} {r.rate:.1f}/s{counted}")
        print(f" round {round_ + 1}: {', '.join(parts)}")
    summary: dict[str, Any] = {"runs": runs, "medians": {}, "targets": {}}
    for mode, results in runs.items():
        rate = statistics.median(r.rate for r in results)
        summary["medians"][mode] = rate
        cpu = {key: statistics.median(r.cpu_ms.get(key, 0.0) for r in results) for key in results[0].cpu_ms}
        extra = "".join(f", {k.replace('_', ' ')} {v}" for k, v in results[-1].extra.items())
        print(f"{mode:>10}: median {rate:7.1f} workflows/s{extra}")
        print(f"{'':>10}  CPU ms per workflow: {', '.join(f'{k} {v:.2f}' for k, v in cpu.items())} "
              f"(sum {sum(cpu.values()):.2f}); worker peak RSS {results[-1].memory.describe()}")  # type: ignore[union-attr]
    for name, top, bottom, target in TARGETS:
        if top not in runs or bottom not in runs:
            continue
        ratios = [a.rate / b.rate for a, b in zip(runs[top], runs[bottom], strict=True)]
        ratio = statistics.median(ratios)
        met = ratio >= target
        line = (f"target {name} >= {target}: {ratio:.2f} (rounds {', '.join(f'{x:.2f}' for x in ratios)}) "
                f"{'met' if met else 'NOT met'}")
        entry: dict[str, Any] = {"ratio": ratio, "rounds": ratios, "target": target, "met": met}
        if top == "tracked":
            counted = statistics.median(a.extra["counter_rate"] / b.rate
                                        for a, b in zip(runs[top], runs[bottom], strict=True))
            entry["ratio_to_counter"] = counted
            line += f"; until the counter instead of the engine: {counted:.2f}"
        summary["targets"][name] = entry
        print(line)
    return summary


# -- setup and clean-up ------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="workflows (chains or instances) per run (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool size (default 2)")
    parser.add_argument("--only", choices=("chains", "steps"), help="run only one of the two measurements")
    parser.add_argument(
        "--chain-modes", default=",".join(CHAIN_MODES), type=lambda s: [m for m in s.split(",") if m],
        help=f"the chain modes to run, in order (default {','.join(CHAIN_MODES)})",
    )  # fmt: skip
    parser.add_argument("--engine-pool", default="threads", help="the engine mode's worker pool (default threads)")
    parser.add_argument("--engine-concurrency", type=int, default=8,
                        help="the engine mode's pool size (default 8)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed workflows before measuring (default 20)")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER,
                        help=f"Redis broker, FLUSHED at the start (default {DEFAULT_BROKER})")
    parser.add_argument("--postgres-admin-url", default=POSTGRES_ADMIN,
                        help=f"where to create the scratch database (default {POSTGRES_ADMIN})")
    parser.add_argument("--timeout", type=float, default=900, help="abort a run after this many seconds (default 900)")
    parser.add_argument("--stall", type=float, default=120, help="abort when nothing finishes for this long (default 120)")
    parser.add_argument("--loglevel", default="warning", help="worker log level (default warning)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs (always kept on failure)")
    args = parser.parse_args(argv)
    args.pool = "prefork"  # throughput.Worker reads it
    if args.n <= 0 or args.rounds <= 0 or args.concurrency <= 0 or args.warmup < 0:
        parser.error("--n, --rounds and --concurrency must be positive, --warmup not negative")
    unknown = [m for m in args.chain_modes if m not in CHAIN_MODES]
    if unknown or not args.chain_modes:
        parser.error(f"--chain-modes: choose among {', '.join(CHAIN_MODES)} (got {unknown or 'none'})")
    if not args.broker_url.startswith(("redis://", "rediss://")):
        parser.error("--broker-url must be a Redis URL (its database also holds the chains' counter)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="oms-bench-canvas-"))
    created_db: str | None = None
    state: State | None = None
    failed = True
    try:
        import redis

        created_db = database_url = create_database(args.postgres_admin_url)
        log(f"created database {database_url.rsplit('/', 1)[1]}")
        redis.Redis.from_url(args.broker_url).flushdb()
        log(f"flushed broker {args.broker_url}")
        # read by shop_noop and the engine when imported, here and in the workers
        os.environ.update(
            OMS_DATABASE_URL=database_url, OMS_BROKER_URL=args.broker_url, SHOP_BROKER_URL=args.broker_url,
            OMS_HOME=str(workdir / ".oms"), OMS_BENCH_COUNTER_URL=args.broker_url,
        )
        for name in ("SHOP_RESULT_BACKEND", "SHOP_TRACK_STARTED", "OMS_BENCH_CPU_DIR"):
            os.environ.pop(name, None)
        from benchmarks import shop_noop  # attaches the engine to the shop's app

        log(f"engine attached to app {shop_noop.app.main!r}")
        import benchmarks.noop_handlers  # noqa: F401  (after the app: the topics' tasks go on the attached app)

        state = State(database_url, args.broker_url, args.broker_url)
        save_workflows()
        log(f"code {code_version()}; machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; "
            f"worker logs in {workdir}")
        runs: dict[str, list[RunResult]] = {}
        if args.only in (None, "chains"):
            runs.update(chains(args, state, workdir, "db+" + database_url))
        if args.only in (None, "steps"):
            runs.update(steps(args, state, workdir))
        summary = summarize(args, runs)
        if args.json:
            args.json.write_text(json.dumps(_jsonable({"args": {k: str(v) for k, v in vars(args).items()},
                                                       **summary}), indent=2))
        failed = False
        return 0
    except BenchmarkError as exc:
        print(f"\nbenchmark aborted: {exc}\nworker logs kept in {workdir}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; cleaning up (worker logs kept in {workdir})", file=sys.stderr)
        return 130
    except Exception as exc:
        if _INTERRUPTED:
            print(f"\ninterrupted; cleaning up (worker logs kept in {workdir})", file=sys.stderr)
            return 130
        import traceback

        traceback.print_exc()
        print(f"\nbenchmark failed: {type(exc).__name__}: {exc}\nworker logs kept in {workdir}", file=sys.stderr)
        return 1
    finally:
        for worker in list(_ALIVE):
            worker.stop()
        if state is not None:
            state.close()
        if "oms.store.db" in sys.modules:
            sys.modules["oms.store.db"].dispose_all()
        if created_db is not None:
            try:
                drop_database(created_db, args.postgres_admin_url)
                log(f"dropped database {created_db.rsplit('/', 1)[1]}")
            except Exception as exc:
                print(f"could not drop {created_db}: {exc}", file=sys.stderr)
        if not failed and not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
