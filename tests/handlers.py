"""Handlers the integration tests' workers import with ``-I tests.handlers``."""

from __future__ import annotations

import time
from datetime import UTC
from typing import Any

from act import Task, subscribe

EPA_STEPS = ("collect_form", "validate_tax_id", "charge_fee", "assign_inspector")


def _echo(task: Task) -> dict[str, Any]:
    return {"step": task.step_id, "form_id": task.payload.get("form_id"), "seen": sorted(task.results)}


for _topic in EPA_STEPS:
    subscribe(_topic)(_echo)


@subscribe("flaky")
def flaky(task: Task) -> Any:
    """Fails while ``attempt <= payload["fail_until"]``, then succeeds."""
    if task.attempt <= task.payload.get("fail_until", 0):
        raise RuntimeError(f"flaky failure on attempt {task.attempt}")
    return "success"


@subscribe("refuse")
def refuse(task: Task) -> str:
    return "fail"


@subscribe("slow")
def slow(task: Task) -> str:
    time.sleep(task.payload.get("sleep", 1.0))
    return "success"


def _received(task: Task) -> dict[str, Any]:
    from datetime import datetime

    return {"received_at": datetime.now(UTC).isoformat(), "action": task.payload["action"]}


subscribe("sla_violation")(_received)
subscribe("sla_warning")(_received)


@subscribe("suicide")
def suicide(task: Task) -> str:
    """Kills its own worker process, every time (as an out-of-memory kill would)."""
    import os
    import signal

    with open(task.payload["log"], "a") as log:
        log.write(f"{task.id} {task.attempt}\n")
    os.kill(os.getpid(), signal.SIGKILL)
    return "success"  # never reached


# -- parallel steps (tests/integration/test_parallel.py) -------------------------------


def _barrier(task: Task) -> dict[str, Any]:
    """Wait until every step named in ``payload["barrier"]`` has arrived, then return together.

    Each arrival is a file in ``payload["dir"]``: the branches of one instance meet
    across worker processes and finish within a millisecond of each other.
    """
    import os
    from pathlib import Path

    folder = Path(task.payload["dir"]) / task.instance_id
    folder.mkdir(parents=True, exist_ok=True)
    began = time.time()
    (folder / task.step_id).touch()
    deadline = began + 20
    while not all((folder / name).exists() for name in task.payload["barrier"]):
        if time.time() > deadline:
            raise RuntimeError(f"barrier of {task.instance_id}: not every branch arrived")
        time.sleep(0.0005)
    return {"began": began, "ended": time.time(), "pid": os.getpid()}


for _topic in ("fan_b", "fan_c"):
    subscribe(_topic)(_barrier)


@subscribe("fan_a")
def fan_out(task: Task) -> dict[str, Any]:
    return {"branches": 2}


@subscribe("fan_d")
def fan_in(task: Task) -> dict[str, Any]:
    return {"saw": sorted(task.results)}


@subscribe("map_item")
def map_item(task: Task) -> dict[str, Any]:
    time.sleep(task.payload.get("sleep", 0.01))
    return {"n": task.item, "index": task.item_index}


@subscribe("map_report")
def map_report(task: Task) -> dict[str, Any]:
    items = task.results["map_item"]
    return {"count": len(items), "in_order": [r["n"] for r in items] == list(range(len(items)))}


@subscribe("branch_ok")
def branch_ok(task: Task) -> str:
    """Succeeds after ``payload["sleeps"][step]`` seconds."""
    time.sleep(task.payload.get("sleeps", {}).get(task.step_id, 0))
    return "success"


@subscribe("branch_fails")
def branch_fails(task: Task) -> str:
    """Fails after ``payload["fail_after"]`` seconds while ``attempt <= payload["fail_until"]``."""
    time.sleep(task.payload.get("fail_after", 0))
    return "fail" if task.attempt <= task.payload.get("fail_until", 0) else "success"


@subscribe("unstorable")
def unstorable(task: Task) -> Any:
    """Returns (or raises with) text PostgreSQL cannot store, and notes each run in the payload's log."""
    with open(task.payload["log"], "a") as log:
        log.write(f"{task.id} {task.attempt}\n")
    if task.payload.get("raise"):
        raise ValueError("bad byte \x00 in the form; " + "x" * 20_000)
    return {"text": "bad\x00byte"}


@subscribe("await_citizen")
def await_citizen(task: Task) -> Any:
    """Hands the step to a person: its clock pauses until the citizen answers."""
    return {"pause": "waiting for citizen"}
