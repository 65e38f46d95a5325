#!/usr/bin/env python
"""Throughput of the engine against bare Celery, and the worker's memory, on real workers.

Engine run: a 4-step workflow whose handlers do nothing (``benchmarks/noop_handlers.py``),
N instances started with :func:`oms.start_workflow`, one ``celery -A oms worker``
subprocess consuming the 4 topic queues; timed from the first enqueue until all N
instances are ``done`` in the database.

Bare run: the same worker command and celeryconfig (JSON, acks_late, prefetch 1), a
chain of 4 no-op Celery tasks (``benchmarks/bare_tasks.py``) with the same message
shape; timed from the first enqueue until the last task of all N chains has
incremented a Redis counter.

Usage (from the repository root)::

    .venv/bin/python benchmarks/throughput.py                 # engine + bare, 2000 each
    .venv/bin/python benchmarks/throughput.py --memory-check  # engine at 2000 then 20000

See benchmarks/README.md for the options and the figures. The engine against what a shop
runs to keep its tasks' states in its database (a chain on Celery's SQL result backend with
``task_track_started``) is ``canvas.py``'s ``engine`` mode, beside that chain's harness::

    .venv/bin/python benchmarks/canvas.py --only chains --chain-modes sqlbackend,engine
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.scratch import POSTGRES_ADMIN, create_database, drop_database  # noqa: E402

DEFAULT_BROKER = "redis://127.0.0.1:6379/9"
WORKFLOW_ID = "bench_noop"
POLL_INTERVAL = 0.2
SAMPLE_INTERVAL = 0.1


class BenchmarkError(Exception):
    """A run that cannot give a figure: timeout, stall, failed instances, dead worker."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


# -- memory: the worker's process group, from /proc ------------------------------------


def _processes() -> Iterator[tuple[int, str, list[str]]]:
    """``(pid, command name, fields after the name)`` of every process, from ``/proc/<pid>/stat``."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the fields after the name: state ppid pgrp ...
        yield int(entry.name), stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()


def _group_members(pgid: int) -> list[int]:
    """Pids whose process group is ``pgid`` (the worker runs in its own session)."""
    return [pid for pid, _, fields in _processes() if int(fields[2]) == pgid]


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_snapshot(worker_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far, by component: the worker's process group,
    PostgreSQL's processes, Redis, this benchmark process, everything else."""
    totals = {"worker": 0.0, "postgres": 0.0, "redis": 0.0, "benchmark": 0.0, "other": 0.0}
    me = os.getpid()
    for pid, comm, fields in _processes():
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
        if int(fields[2]) == worker_pid:
            totals["worker"] += seconds
        elif pid == me:
            totals["benchmark"] += seconds
        elif comm.startswith("postgres"):
            totals["postgres"] += seconds
        elif comm.startswith("redis"):
            totals["redis"] += seconds
        else:
            totals["other"] += seconds
    return totals


def cpu_per_workflow(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """Milliseconds of CPU per workflow, by component (processes that exited in between are missed)."""
    return {k: round(1000 * max(after[k] - before[k], 0.0) / n, 2) for k in before}


@dataclass
class MemoryPeaks:
    main_kib: int = 0
    child_kib: int = 0  # largest single pool child
    total_kib: int = 0  # main + all children, summed at one instant
    children: int = 0
    samples: int = 0

    def describe(self) -> str:
        return (
            f"largest pool child {mib(self.child_kib)}, main {mib(self.main_kib)}, "
            f"total {mib(self.total_kib)} ({self.children} pool children, {self.samples} samples)"
        )


class RssSampler(threading.Thread):
    """Samples VmRSS of the worker's main process and pool children every 0.1 s."""

    def __init__(self, main_pid: int) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.main_pid = main_pid
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._peaks = MemoryPeaks()

    def run(self) -> None:
        while not self._halt.is_set():
            pids = _group_members(self.main_pid)
            main = _rss_kib(self.main_pid)
            children = [_rss_kib(p) for p in pids if p != self.main_pid]
            with self._lock:
                p = self._peaks
                p.main_kib = max(p.main_kib, main)
                p.child_kib = max(p.child_kib, max(children, default=0))
                p.total_kib = max(p.total_kib, main + sum(children))
                p.children = max(p.children, len(children))
                p.samples += 1
            self._halt.wait(SAMPLE_INTERVAL)

    def take(self) -> MemoryPeaks:
        """The peaks since the last call, and start afresh."""
        with self._lock:
            peaks, self._peaks = self._peaks, MemoryPeaks()
        return peaks

    def stop(self) -> None:
        self._halt.set()


# -- the worker subprocess ---------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM the worker if the benchmark itself is killed."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Worker:
    """``celery -A <app> worker`` on ``queues`` with ``module`` imported, in its own process group; ``env`` is
    added to this process's environment for it."""

    def __init__(
        self, name: str, queues: list[str], module: str, args: argparse.Namespace, workdir: Path, *,
        app: str = "oms", env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = workdir / f"worker-{name}.log"
        ready = workdir / f"worker-{name}.ready"
        ready.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "celery", "-A", app, "worker",
            "-Q", ",".join(queues), "-I", module,
            "-P", args.pool, "-c", str(args.concurrency), "-n", f"bench-{name}@%h", "-l", args.loglevel,
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, **(env or {}), "PYTHONPATH": pythonpath, "OMS_BENCH_READY_FILE": str(ready)}
        self._out = self.log_path.open("w")
        self.process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip
        _ALIVE.append(self)
        deadline = time.monotonic() + 60
        while not ready.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchmarkError(f"worker {name} not ready after 60 s; log: {self.log_path}\n{self.tail()}")
            time.sleep(0.1)
        self.sampler = RssSampler(self.process.pid)
        self.sampler.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchmarkError(f"worker {self.name} exited with {self.process.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        if getattr(self, "sampler", None) is not None:
            self.sampler.stop()
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # pool children left behind by a killed main process
        for pid in _group_members(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._out.close()
        if self in _ALIVE:
            _ALIVE.remove(self)


_ALIVE: list[Worker] = []
_STATE: list[State] = []


# -- timing --------------------------------------------------------------------------------


@dataclass
class RunResult:
    kind: str
    instances: int
    seconds: float
    enqueue_seconds: float
    rate: float = 0.0
    memory: MemoryPeaks | None = None
    #: CPU milliseconds per workflow by component (worker, postgres, redis, benchmark, other)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rate = self.instances / self.seconds


def _wait_until(
    kind: str, n: int, progress: Callable[[], int], worker: Worker, started: float, timeout: float, stall: float,
    check: Callable[[], None] = lambda: None,
) -> tuple[float, int]:
    """Poll ``progress()`` every 0.2 s until it reaches ``n``; return (elapsed, polls)."""
    last, last_change, polls, next_report = -1, time.monotonic(), 0, time.monotonic() + 10
    while True:
        done = progress()
        polls += 1
        now = time.monotonic()
        if done >= n:
            return time.perf_counter() - started, polls
        if done != last:
            last, last_change = done, now
        check()
        worker.check_alive()
        if time.perf_counter() - started > timeout:
            raise BenchmarkError(f"{kind} run exceeded {timeout:.0f} s with {done}/{n} finished; aborted")
        if now - last_change > stall:
            raise BenchmarkError(f"{kind} run stalled: {done}/{n} finished, no progress for {stall:.0f} s\n{worker.tail()}")
        if now >= next_report:
            log(f"  {kind}: {done}/{n} finished after {time.perf_counter() - started:.0f} s")
            next_report = now + 10
        time.sleep(POLL_INTERVAL)


class State:
    """Cheap reads of progress: a COUNT on the instances table and a Redis GET."""

    def __init__(self, database_url: str, broker_url: str, counter_url: str) -> None:
        import redis
        from sqlalchemy import create_engine

        self.db = create_engine(database_url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.broker = redis.Redis.from_url(broker_url) if broker_url.startswith(("redis://", "rediss://")) else None
        self.counter = redis.Redis.from_url(counter_url)

    def count(self, status: str, workflow: str = WORKFLOW_ID) -> int:
        from sqlalchemy import text

        with self.db.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM oms_instances WHERE workflow_id = :w AND status = :s"),
                {"w": workflow, "s": status},
            ).scalar_one()

    def db_stats(self) -> dict[str, int]:
        from sqlalchemy import text

        with self.db.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_fetched "
                    "FROM pg_stat_database WHERE datname = current_database()"
                )
            ).one()
        return dict(row._mapping)

    def redis_commands(self) -> int | None:
        if self.broker is None:
            return None
        return int(self.broker.info("stats")["total_commands_processed"])

    def same_redis(self) -> bool:
        """Whether the counter lives in the broker's Redis database (its GETs then show in its stats)."""
        return self.broker is not None and (
            self.broker.connection_pool.connection_kwargs == self.counter.connection_pool.connection_kwargs
        )

    def close(self) -> None:
        self.db.dispose()


def _per(value: float, n: int) -> float:
    return round(value / n, 2)


def run_engine(
    args: argparse.Namespace, state: State, worker: Worker, n: int, *, db_stats: bool, label: str = "engine"
) -> RunResult:
    from oms import start_workflow

    done0, failed0 = state.count("done"), state.count("failed")
    if db_stats:
        log(f"  waiting {args.stats_settle:.0f} s for PostgreSQL's statistics to settle")
        time.sleep(args.stats_settle)
        stats0 = state.db_stats()
    redis0 = state.redis_commands()
    worker.sampler.take()
    cpu0 = cpu_snapshot(worker.pid)
    log(f"{label}: starting {n} instances of {WORKFLOW_ID}")
    started = time.perf_counter()
    for i in range(n):
        start_workflow(WORKFLOW_ID, {"n": i})
        if i % 500 == 499:
            worker.check_alive()
            if time.perf_counter() - started > args.timeout:
                raise BenchmarkError(f"{label} run exceeded {args.timeout:.0f} s while enqueueing ({i + 1}/{n}); aborted")
    enqueued = time.perf_counter() - started
    log(f"  enqueued {n} in {enqueued:.1f} s ({n / enqueued:.0f}/s)")

    def no_failures() -> None:
        failed = state.count("failed") - failed0
        if failed:
            raise BenchmarkError(f"{failed} benchmark instance(s) failed; see the oms_instances.error column")

    elapsed, polls = _wait_until(
        label, n, lambda: state.count("done") - done0, worker, started, args.timeout, args.stall, no_failures
    )
    result = RunResult(label, n, elapsed, enqueued, memory=worker.sampler.take())
    result.cpu_ms = cpu_per_workflow(cpu0, cpu_snapshot(worker.pid), n)
    if redis0 is not None:
        result.extra["redis_commands_per_workflow"] = _per(state.redis_commands() - redis0 - 1, n)
    if db_stats:
        log(f"  waiting {args.stats_settle:.0f} s for PostgreSQL's statistics to settle")
        time.sleep(args.stats_settle)
        stats1 = state.db_stats()
        # every poll is 2 autocommit COUNTs, each a transaction; the stats reads are 2 more
        commits = stats1["xact_commit"] - stats0["xact_commit"] - 2 * polls - 1
        result.extra.update(
            db_commits_per_workflow=_per(commits, n),
            db_rollbacks_per_workflow=_per(stats1["xact_rollback"] - stats0["xact_rollback"], n),
            db_rows_inserted_per_workflow=_per(stats1["tup_inserted"] - stats0["tup_inserted"], n),
            db_rows_updated_per_workflow=_per(stats1["tup_updated"] - stats0["tup_updated"], n),
        )
    log(f"  {label}: {n} workflows in {elapsed:.1f} s = {result.rate:.1f} workflows/s")
    return result


def run_bare(args: argparse.Namespace, state: State, worker: Worker, n: int) -> RunResult:
    from benchmarks.bare_tasks import COUNTER_KEY, build_chain

    state.counter.delete(COUNTER_KEY)
    redis0 = state.redis_commands()
    worker.sampler.take()
    cpu0 = cpu_snapshot(worker.pid)
    log(f"bare: sending {n} chains of 4 no-op tasks")
    started = time.perf_counter()
    for i in range(n):
        build_chain().apply_async()
        if i % 500 == 499:
            worker.check_alive()
    enqueued = time.perf_counter() - started
    log(f"  enqueued {n} in {enqueued:.1f} s ({n / enqueued:.0f}/s)")
    elapsed, polls = _wait_until(
        "bare", n, lambda: int(state.counter.get(COUNTER_KEY) or 0), worker, started, args.timeout, args.stall
    )
    result = RunResult("bare", n, elapsed, enqueued, memory=worker.sampler.take())
    result.cpu_ms = cpu_per_workflow(cpu0, cpu_snapshot(worker.pid), n)
    if redis0 is not None:
        # minus the INFO itself and, when the counter shares the broker's server, the polls' GETs
        polling = polls if state.same_redis() else 0
        result.extra["redis_commands_per_workflow"] = _per(state.redis_commands() - redis0 - 1 - polling, n)
    log(f"  bare: {n} workflows in {elapsed:.1f} s = {result.rate:.1f} workflows/s")
    return result


def warm_up(kind: str, args: argparse.Namespace, state: State, worker: Worker) -> None:
    """A few untimed workflows: imports, connections and pool processes settle first."""
    if args.warmup <= 0:
        return
    log(f"{kind}: warm-up with {args.warmup} untimed workflows")
    if kind == "engine":
        run_engine(args, state, worker, args.warmup, db_stats=False, label="engine warm-up")
    else:
        run_bare(args, state, worker, args.warmup)


# -- setup, the two modes, clean-up --------------------------------------------------------


def code_version() -> str:
    """The commit benchmarked, ``+dirty`` when the engine's files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "oms", "act", "celeryconfig.py"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def save_workflow() -> None:
    from benchmarks.noop_handlers import TOPICS
    from oms import Workflow

    Workflow(id=WORKFLOW_ID, steps=[{"id": topic, "sla": "1h"} for topic in TOPICS]).save()


def _engine_cpu(directory: Path) -> float:
    """Seconds of CPU the pool children spent in the engine's door (claim and complete) so far."""
    total = 0.0
    for path in directory.glob("*.json"):
        try:
            total += json.loads(path.read_text())["seconds"]
        except (OSError, ValueError, KeyError):
            continue
    return total


def throughput(args: argparse.Namespace, state: State, workdir: Path) -> dict[str, Any]:
    """Engine and bare runs alternating ``--rounds`` times, both workers up throughout; medians compared."""
    from benchmarks.bare_tasks import QUEUES
    from benchmarks.noop_handlers import TOPICS

    kinds = [kind for kind in ("engine", "bare") if args.only in (None, kind)]
    cpu_dir = workdir / "engine-cpu"
    cpu_dir.mkdir(exist_ok=True)
    os.environ["OMS_BENCH_CPU_DIR"] = str(cpu_dir)  # noop_handlers accounts the door's CPU there
    workers: dict[str, Worker] = {}
    runs: dict[str, list[RunResult]] = {kind: [] for kind in kinds}
    try:
        for kind in kinds:
            if kind == "engine":
                workers[kind] = Worker("engine", list(TOPICS), "benchmarks.noop_handlers", args, workdir)
            else:
                workers[kind] = Worker("bare", list(QUEUES), "benchmarks.bare_tasks", args, workdir)
            warm_up(kind, args, state, workers[kind])
        for round_ in range(1, args.rounds + 1):
            for kind in kinds:
                if kind == "engine":
                    engine_cpu = _engine_cpu(cpu_dir)
                    result = run_engine(args, state, workers[kind], args.instances, db_stats=args.db_stats,
                                        label=f"engine (round {round_})")
                    time.sleep(0.5)  # the children write their door CPU every 0.25 s
                    result.cpu_ms["worker: engine door"] = _per(1000 * (_engine_cpu(cpu_dir) - engine_cpu),
                                                                args.instances)
                else:
                    result = run_bare(args, state, workers[kind], args.instances)
                runs[kind].append(result)
    finally:
        for worker in workers.values():
            worker.stop()

    def median(kind: str, value: Callable[[RunResult], float]) -> float:
        return statistics.median(value(r) for r in runs[kind])

    print()
    print(f"== throughput: {args.instances} workflows of 4 no-op steps, pool {args.pool}, concurrency "
          f"{args.concurrency}, {args.rounds} alternating rounds")
    for round_ in range(args.rounds):
        line = ", ".join(f"{kind} {runs[kind][round_].rate:.1f}/s" for kind in kinds)
        if len(kinds) == 2:
            line += f", ratio {runs['engine'][round_].rate / runs['bare'][round_].rate:.2f}"
        print(f" round {round_ + 1}: {line}")
    results: dict[str, Any] = {"runs": runs}
    for kind in kinds:
        rate = median(kind, lambda r: r.rate)
        results[kind] = rate
        extra = "".join(f", {k.replace('_', ' ')} {v}" for k, v in runs[kind][-1].extra.items())
        print(f"{kind:>6}: median {rate:8.1f} workflows/s ({rate * 4:.0f} steps/s{extra})")
    if len(kinds) == 2:
        ratio = results["engine"] / results["bare"]
        results["ratio"] = ratio
        verdict = "reached" if ratio >= 0.65 else "NOT reached"
        print(f" ratio of medians: engine/bare = {ratio:.2f}  (target >= 0.65: {verdict})")
    for kind in kinds:
        parts = {key: median(kind, lambda r, key=key: r.cpu_ms.get(key, 0.0)) for key in runs[kind][0].cpu_ms}
        if "worker: engine door" in parts:
            parts["worker"] -= parts["worker: engine door"]
            parts = {"worker: Celery and act": parts.pop("worker"), **parts}
        print(f"{kind:>6} CPU ms per step (median of rounds): "
              f"{', '.join(f'{k} {v / 4:.2f}' for k, v in parts.items())} (sum {sum(parts.values()) / 4:.2f})")
    for kind in kinds:
        print(f"{kind:>6} worker peak RSS: {runs[kind][-1].memory.describe()}")  # type: ignore[union-attr]
    return results


def memory_check(args: argparse.Namespace, state: State, workdir: Path) -> dict[str, Any]:
    from benchmarks.noop_handlers import TOPICS

    sizes = args.memory_sizes
    worker = Worker("engine-memory", list(TOPICS), "benchmarks.noop_handlers", args, workdir)
    runs: list[RunResult] = []
    try:
        warm_up("engine", args, state, worker)
        for n in sizes:
            runs.append(run_engine(args, state, worker, n, db_stats=False, label=f"engine x{n}"))
    finally:
        worker.stop()
    print()
    print(f"== memory check: one engine worker (pid {worker.pid}), pool {args.pool}, concurrency {args.concurrency}")
    for r in runs:
        print(f"{r.instances:>7} instances: {r.rate:6.1f} workflows/s, peak RSS {r.memory.describe()}")
    first, last = runs[0].memory, runs[-1].memory
    child_growth = 100.0 * (last.child_kib - first.child_kib) / first.child_kib
    total_growth = 100.0 * (last.total_kib - first.total_kib) / first.total_kib
    flat = abs(child_growth) <= 10 and abs(total_growth) <= 10
    print(
        f"growth {sizes[0]} -> {sizes[-1]}: largest pool child {child_growth:+.1f}%, total {total_growth:+.1f}%  "
        f"({'flat: within 10%' if flat else 'NOT flat: over 10%'})"
    )
    return {"runs": runs, "child_growth_percent": child_growth, "total_growth_percent": total_growth, "flat": flat}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2000, help="workflows per run (default 2000)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool size (default 2)")
    parser.add_argument("--pool", default="prefork", help="worker pool: prefork, threads, solo, ... (default prefork)")
    parser.add_argument(
        "--database-url",
        help="state database (default: a fresh PostgreSQL database oms_bench_<hex>, dropped at the end)",
    )
    parser.add_argument("--postgres-admin-url", default=POSTGRES_ADMIN, help=f"where to create it (default {POSTGRES_ADMIN})")
    parser.add_argument(
        "--broker-url", default=DEFAULT_BROKER, help=f"Redis broker, FLUSHED at the start (default {DEFAULT_BROKER})"
    )
    parser.add_argument(
        "--counter-url", help="Redis for the bare run's completion counter (default: the broker)"
    )
    parser.add_argument("--only", choices=("engine", "bare"), help="run only one side")
    parser.add_argument(
        "--memory-check", action="store_true",
        help="instead of engine vs bare: the engine at 2000 then 20000 instances on one worker, peak RSS of each",
    )  # fmt: skip
    parser.add_argument(
        "--memory-sizes", default="2000,20000", type=lambda s: [int(x) for x in s.split(",")],
        help="instance counts of --memory-check, in order (default 2000,20000)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="alternating engine/bare rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed workflows before each run (default 20)")
    parser.add_argument(
        "--timeout", type=float,
        help="abort a run after this many seconds (default 900; 3600 with --memory-check, for its 20000)",
    )  # fmt: skip
    parser.add_argument("--stall", type=float, default=120, help="abort when nothing finishes for this long (default 120)")
    parser.add_argument("--loglevel", default="warning", help="worker log level (default warning: no per-task lines)")
    parser.add_argument(
        "--no-db-stats", dest="db_stats", action="store_false",
        help="skip the PostgreSQL transaction counts of the engine run (they cost 2 x 11 s of waiting)",
    )  # fmt: skip
    parser.add_argument("--stats-settle", type=float, default=11, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs (always kept on failure)")
    args = parser.parse_args(argv)
    if args.timeout is None:
        args.timeout = 3600.0 if args.memory_check else 900.0
    if args.instances <= 0 or args.concurrency <= 0 or any(n <= 0 for n in args.memory_sizes):
        parser.error("counts must be positive")
    if not args.broker_url.startswith(("redis://", "rediss://")) and not args.counter_url:
        parser.error("a non-Redis broker needs --counter-url (a Redis for the bare run's counter)")
    return args


def _jsonable(value: Any) -> Any:
    if isinstance(value, RunResult):
        return asdict(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


_INTERRUPTED: list[int] = []


def _interrupt(signum: int, _frame: Any) -> None:
    """SIGTERM is handled like Ctrl-C: the ``finally`` below stops the workers and drops the database."""
    _INTERRUPTED.append(signum)
    raise KeyboardInterrupt()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started in the background, where SIGINT is ignored
    workdir = Path(tempfile.mkdtemp(prefix="oms-bench-"))
    created_db: str | None = None
    failed = True
    try:
        database_url = args.database_url
        if database_url is None:
            created_db = database_url = create_database(args.postgres_admin_url)
            log(f"created database {database_url.rsplit('/', 1)[1]}")
        counter_url = args.counter_url or args.broker_url
        if args.broker_url.startswith(("redis://", "rediss://")):
            import redis

            redis.Redis.from_url(args.broker_url).flushdb()
            log(f"flushed broker {args.broker_url}")
        # The engine reads these when imported, in this process and in the worker subprocesses.
        os.environ.update(
            OMS_DATABASE_URL=database_url,
            OMS_BROKER_URL=args.broker_url,
            OMS_HOME=str(workdir / ".oms"),
            OMS_BENCH_COUNTER_URL=counter_url,
        )
        state = State(database_url, args.broker_url, counter_url)
        _STATE.append(state)
        save_workflow()
        log(
            f"code {code_version()}; machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; "
            f"worker logs in {workdir}"
        )
        results = memory_check(args, state, workdir) if args.memory_check else throughput(args, state, workdir)
        if args.json:
            args.json.write_text(json.dumps(_jsonable({"args": {k: str(v) for k, v in vars(args).items()}, **results}), indent=2))
        failed = False
        return 0
    except BenchmarkError as exc:
        print(f"\nbenchmark aborted: {exc}\nworker logs kept in {workdir}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; cleaning up (worker logs kept in {workdir})", file=sys.stderr)
        return 130
    except Exception as exc:  # e.g. the broker or the database went away mid-run
        if _INTERRUPTED:  # the interrupt landed inside a driver call, which re-raised it as its own error
            print(f"\ninterrupted; cleaning up (worker logs kept in {workdir})", file=sys.stderr)
            return 130
        import traceback

        traceback.print_exc()
        print(f"\nbenchmark failed: {type(exc).__name__}: {exc}\nworker logs kept in {workdir}", file=sys.stderr)
        return 1
    finally:
        for worker in list(_ALIVE):
            worker.stop()
        for state in _STATE:
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
