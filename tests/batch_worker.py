"""A batch pull worker for tests: ``python -m tests.batch_worker TOPIC [TOPIC…] [--max-tasks N] [--idle S]``.

Loops ``fetch_tasks`` + ``complete_tasks`` over its topics until none has had work for ``--idle`` seconds; prints
how many tasks it completed and how many were refused.
"""

from __future__ import annotations

import argparse
import os
import time

from act import complete_tasks, fetch_tasks

parser = argparse.ArgumentParser()
parser.add_argument("topics", nargs="+")
parser.add_argument("--max-tasks", type=int, default=7)
parser.add_argument("--idle", type=float, default=3.0, help="exit after this long without work")
args = parser.parse_args()

done = refused = 0
last = time.monotonic()
while time.monotonic() - last < args.idle:
    for topic in args.topics:
        tasks = fetch_tasks(topic, max_tasks=args.max_tasks, max_wait=0.2)
        if tasks:
            outcomes = complete_tasks([(task.id, {"by": os.getpid()}) for task in tasks])
            done += sum(o.ok for o in outcomes)
            refused += sum(not o.ok for o in outcomes)
            last = time.monotonic()
print(f"completed {done} refused {refused}", flush=True)
