"""The engine task ``oms.task_step``: runs a shop's registered Celery task as a push step.

Imported by workers through the app's ``include`` (the engine's, or a shop's after
:func:`oms.attach`); its messages carry the shop task's name in ``task``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import Task as CeleryTask

from oms.celery.app import engine_task
from oms.celery.compiler import TASK_STEP

from .subscribe import run_step
from .taskstep import run_task

__all__ = ["task_step"]


def execute(self: CeleryTask, instance_id: str, index: int, task: str, item: int | None = None, items: int = 1,
            branches: list[int] | None = None, **_: Any) -> Any:
    """Claim the step (or a chunk's items or branches), run the shop's task ``task`` once each, record the outcomes
    (see :func:`act.subscribe.run_step`)."""
    worker = f"{self.request.hostname}"
    return run_step(worker, partial(run_task, task, worker), instance_id, index, item, items, branches)


task_step = engine_task(TASK_STEP, execute, bind=True)
