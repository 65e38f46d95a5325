"""How long an idle ``celery -A oms worker`` takes to stop on SIGTERM, on the embedded broker and on Redis.

A user stops a worker with Ctrl-C or a deploy's SIGTERM and waits for it; so do the
tests, once per worker. Each round starts a prefork worker (concurrency 2) on a fresh
SQLite database, waits for "ready.", lets it idle a moment, sends SIGTERM and times
until the process has exited.

    .venv/bin/python benchmarks/worker_stop.py            # --rounds 5 --brokers filesystem,redis
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BROKERS = {"filesystem": "filesystem://", "redis": "redis://127.0.0.1:6379/10"}


def stop_time(broker: str, idle: float) -> float:
    """Seconds from SIGTERM to the exit of an idle worker on ``broker``."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMS_DATABASE_URL": f"sqlite:///{tmp}/oms.db", "OMS_BROKER_URL": broker,
               "OMS_HOME": f"{tmp}/.oms"}
        log = Path(tmp) / "worker.log"
        with log.open("w") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "oms", "worker", "-Q", "oms", "-P", "prefork", "-c", "2",
                 "-n", "stop@%h", "-l", "info", "--without-mingle", "--without-gossip"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 60
            while " ready." not in log.read_text():
                if worker.poll() is not None or time.monotonic() > deadline:
                    worker.kill()
                    raise SystemExit(f"the worker did not start:\n{log.read_text()}")
                time.sleep(0.1)
            time.sleep(idle)
            started = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
            return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--brokers", default="filesystem,redis")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds the worker idles before SIGTERM")
    args = parser.parse_args()
    for name in args.brokers.split(","):
        times = [stop_time(BROKERS[name], args.idle) for _ in range(args.rounds)]
        print(f"{name:>10}: median {statistics.median(times):.2f} s, "
              f"min {min(times):.2f}, max {max(times):.2f} over {len(times)} stops")


if __name__ == "__main__":
    main()
