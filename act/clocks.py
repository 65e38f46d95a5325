"""Paused SLA clocks: a step that waits on the citizen stops counting against its SLA.

``pause_clock`` parks the step (it keeps running, with no lease to renew and no
holder), so a person or a portal may later ``resume_clock`` it and complete it
with :func:`act.complete_task`. A push handler pauses its step by returning
``{"pause": "waiting for citizen"}``.
"""

from __future__ import annotations

from oms.engine import door


def pause_clock(task_id: str, reason: str, worker_id: str | None = None) -> bool:
    """Stop the step's SLA clock, with ``reason``; ``False`` if it was paused already.

    Only the worker holding the task may (``worker_id``, by default this process's, as
    for :func:`act.complete_task`). While paused the step is neither warned nor
    breached; its workflow's ``max_pause`` caps the time paused, after which the
    clock runs again by itself.
    """
    return door.pause(task_id, reason, worker_id=worker_id)


def resume_clock(task_id: str) -> bool:
    """Run the step's SLA clock again, its deadline later by the time paused; ``False`` if it was not paused."""
    return door.resume_clock(task_id)
