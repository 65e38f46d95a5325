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


@subscribe("unstorable")
def unstorable(task: Task) -> Any:
    """Returns (or raises with) text PostgreSQL cannot store, and notes each run in the payload's log."""
    with open(task.payload["log"], "a") as log:
        log.write(f"{task.id} {task.attempt}\n")
    if task.payload.get("raise"):
        raise ValueError("bad byte \x00 in the form; " + "x" * 20_000)
    return {"text": "bad\x00byte"}
