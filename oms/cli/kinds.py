"""Steps ended by a person, a signal or the clock, in words: ``oms status``'s notes and ``oms history``'s details.

A human step says whom it is queued for or who holds it, a waiting step the signal it
waits for (and that one is kept for it), a timer when it ends; their events say who
released, reassigned or signalled what, rather than listing their fields.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..reads import StepInfo, TaskInfo
from ..states import EventKind, StepKind, TaskStatus
from . import render
from .render import candidates


def step_note(step: StepInfo, task: TaskInfo | None, now: datetime) -> str:
    """What ``oms status`` says of a step of its kind: of attempt ``task``, or of the step not ready yet (``None``)."""
    status = None if task is None else task.status
    if step.kind == StepKind.HUMAN:
        assign = task.assign if task is not None and task.assign is not None else step.assign
        said: dict[str | None, str] = {None: f"for {candidates(assign)}",
                                       TaskStatus.PENDING: f"queued for {candidates(assign)}",
                                       TaskStatus.RUNNING: f"held by {task.worker_id if task else '-'}"}
        return said.get(status, "")
    if step.kind == StepKind.WAIT:
        if status == TaskStatus.DONE:
            return f"ended by signal {step.wait_for}"
        kept = " (received already: kept until the step is ready)" if step.signal_kept else ""
        return f"waits for signal {step.wait_for}{kept}" if status in (None, TaskStatus.PENDING) else ""
    if step.kind == StepKind.TIMER:
        if status == TaskStatus.DONE:
            return f"slept {step.sleep}"
        if task is None or status != TaskStatus.PENDING or task.wake_at is None:
            return f"sleeps {step.sleep}" if task is None else ""
        left = (task.wake_at - now).total_seconds()
        when = (f"in {render.seconds(left)}" if left >= 0
                else f"{render.seconds(-left)} ago: the next SLA scan ends it")
        return f"sleeps {step.sleep}, ends {render.moment(task.wake_at)} ({when})"
    return ""


def escalated(fired: int | None, rungs: int) -> str:
    """A ladder's progress, as ``oms status`` says it: ``escalated 2 of 4`` (``not escalated, 4 rungs``)."""
    return f"escalated {fired} of {rungs}" if fired else f"not escalated, {rungs} rung{'s' if rungs != 1 else ''}"


def _escalation(data: dict[str, Any]) -> str:
    """A rung fired: which, when it was due, and what it did."""
    did = []
    if data.get("notices"):
        did.append("told " + ", ".join(n.get("target", "?") for n in data["notices"]))
    if data.get("reassigned"):
        did.append(f"reassigned to {candidates(data['reassigned'])}")
    if data.get("escalation"):
        did.append(f"started escalation {data['escalation']}")
    if data.get("policy"):
        did.append(f"applied policy {data['policy']}")
    return (f"rung {data.get('rung')} of {data.get('of')} at {data.get('at')} "
            f"(due {data.get('due_at')}): " + ("; ".join(did) or "nothing to do"))


def _signal(data: dict[str, Any]) -> str:
    return (f"signal {data.get('name')} (id {data.get('signal')})"
            + (", kept until its step is ready" if data.get("kept") else "")
            + (f", idempotency key {data['idempotency_key']}" if data.get("idempotency_key") else ""))


def _released(data: dict[str, Any]) -> str:
    reason = data.get("reason") or "released"
    return f"{data.get('worker_id')} released it" if reason == "released" else \
        f"{data.get('worker_id')}'s claim ended: {reason}"


def _reassigned(data: dict[str, Any]) -> str:
    assign = {"users": (data.get("users") or "").split(",") if data.get("users") else [],
              "groups": (data.get("groups") or "").split(",") if data.get("groups") else []}
    held = f"; it was held by {data['previous_holder']}" if data.get("previous_holder") else ""
    return f"by {data.get('by')}: now for {candidates(assign)}{held}"


def _started(data: dict[str, Any]) -> str | None:
    return f"held by {data.get('worker_id')}, given by {data['by']}" if data.get("by") else None


def _done(data: dict[str, Any]) -> str | None:
    if data.get("signal"):
        return f"ended by signal {data['signal']} (id {data.get('signal_id')})"
    return f"the timer ended after {data['slept']}" if data.get("slept") else None


#: Event kinds told in words; ``None`` from one: its fields as they are.
_WORDS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    EventKind.SIGNAL_RECEIVED: _signal, EventKind.TASK_RELEASED: _released, EventKind.TASK_REASSIGNED: _reassigned,
    EventKind.TASK_STARTED: _started, EventKind.TASK_DONE: _done,
    EventKind.TASK_ESCALATED: _escalation, EventKind.WORKFLOW_ESCALATED: _escalation,
}


def event_details(kind: str, data: dict[str, Any]) -> str:
    """An event's details as ``oms history`` prints them: in words for people's, signals' and timers' events,
    else ``key=value`` pairs."""
    words = _WORDS.get(kind)
    said = words(data) if words is not None else None
    return said if said is not None else " ".join(f"{k}={v}" for k, v in data.items() if v is not None)
