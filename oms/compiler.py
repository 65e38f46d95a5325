"""Compile a definition into the Celery chain of one instance, from any step onward.

The chain is derived data: starting an instance, resuming after a pull step,
retrying a step and re-publishing a lost message all call :func:`compile_chain`.
"""

from __future__ import annotations

from celery import Celery, chain
from celery.canvas import Signature

from .definitions import Step, Workflow
from .limits import time_limits

__all__ = ["task_name", "time_limits", "step_signature", "compile_chain"]


def task_name(topic: str) -> str:
    """The Celery task name that runs a topic's handler (what Flower shows)."""
    return f"act.{topic}"


def step_signature(app: Celery, workflow: Workflow, instance_id: str, index: int) -> Signature:
    """One step as an immutable signature routed to its topic's queue.

    ``kwargsrepr`` (what Flower shows) is given, not left to Celery's ``saferepr``,
    which costs a quarter of a publish for these few plain values.
    """
    step: Step = workflow.steps[index]
    soft, hard = time_limits(step.sla)
    kwargs = {"instance_id": instance_id, "workflow": workflow.id, "step": step.id, "index": index}
    return app.signature(
        task_name(step.topic),
        kwargs=kwargs,
        queue=step.topic,
        immutable=True,
        soft_time_limit=soft,
        time_limit=hard,
        argsrepr="()",
        kwargsrepr=repr(kwargs),
    )


def compile_chain(app: Celery, workflow: Workflow, instance_id: str, from_step: int = 0) -> Signature:
    """The chain of steps ``from_step`` to the last, for one instance.

    The last step alone is its own signature: a chain of one says nothing more and
    costs a fifth more to publish (every escalation is such a step).
    """
    if not 0 <= from_step < len(workflow.steps):
        raise IndexError(f"workflow {workflow.id!r} has no step {from_step}")
    if from_step == len(workflow.steps) - 1:
        return step_signature(app, workflow, instance_id, from_step)
    return chain(*(step_signature(app, workflow, instance_id, i) for i in range(from_step, len(workflow.steps))))
