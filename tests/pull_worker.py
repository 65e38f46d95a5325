"""A pull worker process for tests: ``python -m tests.pull_worker TOPIC [--die-after-fetch] [--idle S]``."""

from __future__ import annotations

import argparse
import os

from act import complete_task, fetch_task

parser = argparse.ArgumentParser()
parser.add_argument("topic")
parser.add_argument("--die-after-fetch", action="store_true", help="fetch one task, then die (os._exit)")
parser.add_argument("--lease", default="5m")
parser.add_argument("--idle", type=float, default=3.0, help="exit after this long without work")
args = parser.parse_args()

fetch_task(f"{args.topic}_warmup", max_wait=0)  # warm (the engine, a connection) on a topic with no steps
print("ready", flush=True)
done = 0
while True:
    task = fetch_task(args.topic, max_wait=args.idle, lease=args.lease)
    if task is None:
        break
    if args.die_after_fetch:
        print(f"fetched {task.id}, dying", flush=True)
        os._exit(9)
    complete_task(task.id, {"by": os.getpid()})
    done += 1
print(f"completed {done}", flush=True)
