"""Steps that run a shop's registered Celery task: found at ``save()``, their retries taken from the task.

The engine owns a task step's retries: the attempt calls the task's function once,
and a ``self.retry()`` or an ``autoretry_for`` retry inside it fails the attempt. A
step that sets none of ``retries``, ``retry_backoff`` and ``retry_backoff_max``
takes them from a task declaring ``autoretry_for``, decided here when the saving
process can import the task, so that the stored definition shows what will happen.
"""

from __future__ import annotations

import importlib
import logging
from datetime import timedelta
from typing import Any

from celery import Task as CeleryTask

from ..exceptions import InvalidDefinition
from ..model.definitions import Definition, Step
from ..store.catalog import definition
from .app import current

__all__ = ["registered", "resolve", "step_order"]

logger = logging.getLogger(__name__)

_RETRY_FIELDS = {"retries", "retry_backoff", "retry_backoff_max"}


def registered(name: str) -> CeleryTask | None:
    """The task ``name`` registered on the engine's app in this process, or ``None``."""
    return current().tasks.get(name)


def _find(name: str) -> tuple[bool, CeleryTask | None]:
    """``(looked, task)``: the task, once its module (the name less its last part) is imported.

    ``looked`` is ``False`` when the module cannot be imported here (a saver without the shop's code).
    """
    found = registered(name)
    if found is not None:
        return True, found
    module = name.rpartition(".")[0]
    try:
        importlib.import_module(module)
    except Exception as exc:  # not this process's code, or code that needs its own setup (Django's settings)
        logger.info("task %r not checked: its module %r cannot be imported here (%s)", name, module, exc)
        return False, None
    return True, registered(name)


def _inherited(workflow_id: str, step: Step, task: CeleryTask) -> dict[str, Any]:
    """The retry fields a step takes from its task's ``autoretry_for`` options (none when it sets its own)."""
    if not getattr(task, "autoretry_for", ()) or _RETRY_FIELDS & step.model_fields_set:
        return {}
    if task.max_retries is None:
        raise InvalidDefinition(
            f"invalid workflow {workflow_id!r}: step {step.id!r} runs task {task.name!r}, which retries for ever "
            "(autoretry_for with max_retries=None); the engine owns a task step's retries: give the step "
            "an explicit 'retries'")
    backoff = task.retry_backoff
    return {
        "retries": int(task.max_retries),
        "retry_backoff": backoff if isinstance(backoff, bool) else timedelta(seconds=float(backoff)),
        "retry_backoff_max": timedelta(seconds=float(getattr(task, "retry_backoff_max", 600))),
    }


def resolve(workflow: Definition) -> Definition:
    """``workflow`` as it will be stored: each task step checked against the task, its retries inherited.

    Raises:
        InvalidDefinition: a step names a task its module does not register, or one that retries for ever.
    """
    steps: list[dict[str, Any]] = []
    changed = False
    for step in workflow.steps:
        spec = step.model_dump(exclude_defaults=True)
        if step.task is not None:
            looked, task = _find(step.task)
            if looked and task is None:
                raise InvalidDefinition(
                    f"invalid workflow {workflow.id!r}: step {step.id!r} names task {step.task!r}, which no worker "
                    f"can run: its module {step.task.rpartition('.')[0]!r} registers no such task")
            if task is not None and (inherited := _inherited(workflow.id, step, task)):
                spec.update(inherited)
                changed = True
        steps.append(spec)
    if not changed:
        return workflow
    return type(workflow)(**{**workflow.model_dump(exclude_defaults=True), "steps": steps})


def step_order(workflow_id: str, version: int) -> list[str]:
    """The ids of a definition's steps, in the order they are written."""
    return [step.id for step in definition(workflow_id, version).steps]
