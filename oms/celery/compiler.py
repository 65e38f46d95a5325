"""Compile a definition into the Celery chain of one instance, from any step onward.

The chain is derived data: starting an instance, resuming after a pull step,
retrying a step, offering the branches of a fan-out or a join, and re-publishing a
lost message all call :func:`compile_chain`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery, chain
from celery.canvas import Signature

from ..model.definitions import Definition, Step
from ..model.limits import time_limits, wall_sla

__all__ = ["TASK_STEP", "task_name", "time_limits", "step_signature", "compile_chain", "step_queue", "task_step_queue"]

#: The engine task that runs a shop's Celery task as a step (``act.tasks``).
TASK_STEP = "oms.task_step"


def task_name(topic: str) -> str:
    """The Celery task name that runs a topic's handler (what Flower shows)."""
    return f"act.{topic}"


def task_step_queue(app: Celery, step: Step) -> str:
    """The queue of a task step: its own ``topic`` when it names one other than its id, else the queue the app's
    router gives the task (the shop's ``task_routes``, else its default queue)."""
    assert step.task is not None
    if step.topic != step.id:
        return step.topic
    queue = app.amqp.router.route({}, step.task).get("queue")
    return str(getattr(queue, "name", queue) or app.conf.task_default_queue)


def step_queue(app: Celery, step: Step) -> str:
    """The queue a step's messages go to: its topic's, or for a task step the one :func:`task_step_queue` says."""
    return step.topic if step.task is None else task_step_queue(app, step)


def step_signature(app: Celery, workflow: Definition, instance_id: str, index: int,
                   item_index: int | None = None, items: int = 1, branches: tuple[int, ...] = ()) -> Signature:
    """One step (one item of a mapped step, or ``items`` of them from ``item_index``: a chunk; or the sibling
    ``branches``, ``index`` first: a chunk of steps) as an immutable signature routed to its topic's queue. A chunk's
    time limits are its items' (or steps') together: each one's own SLA is held by its alarm
    (:func:`act.subscribe.sla_alarm`).

    ``kwargsrepr`` (what Flower shows) is given, not left to Celery's ``saferepr``,
    which costs a quarter of a publish for these few plain values.
    """
    step: Step = workflow.steps[index]
    # under a calendar the deadline moves with opening hours and pauses: the scanner breaches, not Celery
    slas = [None if workflow.calendar_of(i) else wall_sla(workflow.steps[i]) for i in branches or (index,)]
    held = [sla for sla in slas if sla is not None]
    soft, hard = (None, None) if len(held) < len(slas) else time_limits(sum(held, timedelta()) * items)
    kwargs: dict[str, Any] = {"instance_id": instance_id, "workflow": workflow.id, "step": step.id, "index": index}
    if item_index is not None:
        kwargs["item"] = item_index
    if items > 1:
        kwargs["items"] = items
    if len(branches) > 1:
        kwargs["branches"] = list(branches)
    name = task_name(step.topic)
    if step.task is not None:
        kwargs["task"] = step.task
        name = TASK_STEP
    return app.signature(
        name,
        kwargs=kwargs,
        queue=step_queue(app, step),
        immutable=True,
        soft_time_limit=soft,
        time_limit=hard,
        argsrepr="()",
        kwargsrepr=repr(kwargs),
    )


def compile_chain(app: Celery, workflow: Definition, instance_id: str, from_step: int = 0, *,
                  item_index: int | None = None, items: int = 1, branches: tuple[int, ...] = ()) -> Signature:
    """The chain of one instance from ``from_step`` to the end of its straight run.

    A straight run is a line of steps each the only successor of the one before (the
    whole workflow, when it is a plain list). A fan-out, a join or a mapped step ends
    it: the engine publishes what follows when the database says it is ready. The
    last step of a run alone is its own signature, as is a mapped step's item (or
    chunk of items) and a chunk of sibling ``branches``: a chain of one says nothing
    more and costs a fifth more to publish.
    """
    if not 0 <= from_step < len(workflow.steps):
        raise IndexError(f"workflow {workflow.id!r} has no step {from_step}")
    if item_index is not None or branches:
        return step_signature(app, workflow, instance_id, from_step, item_index, items, branches)
    run = workflow.graph.run(from_step)
    if len(run) == 1:
        return step_signature(app, workflow, instance_id, from_step)
    return chain(*(step_signature(app, workflow, instance_id, i) for i in run))
