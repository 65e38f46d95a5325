"""A shop's Celery task run as a step: its arguments from the instance, its return value as the step's result.

The attempt calls the task once, through ``Task.__call__`` (so a bound task has its
``self.request``). Called so, Celery re-raises a ``self.retry()`` or an
``autoretry_for`` retry instead of sending the task again: the attempt fails, and
the engine retries it per the step (``oms.celery.tasksteps`` says how the step's
retries follow the task's options).
"""

from __future__ import annotations

import inspect
import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task as CeleryTask

from oms.celery.tasksteps import step_order
from oms.engine import checks
from oms.engine.door import Task
from oms.exceptions import InvalidPayload

from .outcome import Returned, failure
from .subscribe import alarm, in_pool_child

__all__ = ["MissingArgument", "TaskTimeLimitExceeded", "arguments", "merged", "result_of", "run_task"]

logger = logging.getLogger(__name__)

#: Parameters that get a whole object of the instance, not one of its keys.
_WHOLE = ("payload", "results")


class MissingArgument(Exception):
    """A required parameter of the task that neither the payload nor an earlier step's result supplies."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class TaskTimeLimitExceeded(Exception):
    """The task's own ``soft_time_limit`` ran out before the step's SLA: a failed attempt, not a breach."""


def merged(task: Task, order: list[str]) -> dict[str, Any]:
    """The payload's keys, then the keys of each earlier step's result (an object) in the definition's order:
    a result's key wins over the payload's, and a later step's over an earlier one's."""
    values = dict(task.payload)
    ranked = sorted(task.results, key=lambda step: order.index(step) if step in order else len(order))
    for step in ranked:
        result = task.results[step]
        if isinstance(result, dict):
            values.update(result)
    return values


def arguments(signature: inspect.Signature, task: Task, order: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` for a function of ``signature``, by parameter name.

    ``payload`` and ``results`` get the whole objects, ``item`` a mapped step's item, any other
    parameter the merged key of its name (:func:`merged`); ``**kwargs`` gets every merged key
    no other parameter took.

    Raises:
        MissingArgument: a parameter without a default that nothing supplies.
    """
    values = merged(task, order)
    whole: dict[str, Any] = {"payload": task.payload, "results": task.results}
    if task.item_index is not None:
        whole["item"] = task.item
    named = {p.name for p in signature.parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            continue
        if parameter.kind is parameter.VAR_KEYWORD:
            kwargs.update({key: value for key, value in values.items() if key not in named})
            continue
        if parameter.name in whole:
            value = whole[parameter.name]
        elif parameter.name in values:
            value = values[parameter.name]
        elif parameter.default is not parameter.empty:
            if parameter.kind is parameter.POSITIONAL_ONLY:
                args.append(parameter.default)
            continue
        else:
            raise MissingArgument(parameter.name)
        if parameter.kind is parameter.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[parameter.name] = value
    return args, kwargs


def result_of(value: Any) -> Returned:
    """A task's return value as the step's outcome: an object as the result, any other JSON value as
    ``{"value": v}``, ``None`` as done with no result."""
    if value is None:
        return Returned(True)
    try:
        return Returned(True, checks.check_result(value if isinstance(value, dict) else {"value": value}))
    except InvalidPayload as exc:
        return failure(f"the task's return value cannot be stored as the step's result: {exc}")


@contextmanager
def own_time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the task at its own ``soft_time_limit`` when that comes before what is left of the SLA.

    :func:`act.subscribe.sla_alarm` has set ``ITIMER_REAL`` to the SLA left; when the
    task's limit is shorter, this takes the timer for it, and gives the SLA's back
    (less the time spent) on the way out. Prefork children only, as the SLA's alarm.
    """
    if not seconds or not in_pool_child():
        yield
        return
    left, _ = signal.getitimer(signal.ITIMER_REAL)
    if left and left <= seconds:
        yield  # the SLA runs out first: a breach, as for any push step
        return

    started = time.monotonic()
    try:
        with alarm(seconds, TaskTimeLimitExceeded(f"soft_time_limit of {seconds}s")):
            yield
    finally:
        if left:
            signal.setitimer(signal.ITIMER_REAL, max(left - (time.monotonic() - started), 0.001))


def run_task(celery_task: CeleryTask, task: Task) -> Returned:
    """Run the shop's registered ``celery_task`` once for ``task`` (the handler :func:`act.subscribe.run_step` calls).

    Its exceptions propagate: ``run_step`` records them as the attempt's failure.
    """
    name = celery_task.name
    try:
        args, kwargs = arguments(inspect.signature(celery_task.run), task, step_order(task.workflow_id, task.version))
    except MissingArgument as exc:
        return failure(f"task {name!r} needs argument {exc.name!r}, which neither the payload nor an earlier "
                       "step's result holds")
    limit = getattr(celery_task, "soft_time_limit", None)
    try:
        with own_time_limit(limit):
            value = celery_task(*args, **kwargs)
    except TaskTimeLimitExceeded:
        logger.warning("task %s ran past its soft_time_limit (%ss) in step %s of %s", name, limit, task.step_id,
                       task.instance_id)
        return failure(f"task {name!r} ran past its own soft_time_limit ({limit}s)")
    return result_of(value)
