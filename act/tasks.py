"""The engine task ``oms.task_step``: runs a shop's registered Celery task as a push step.

Imported by workers through the app's ``include`` (the engine's, or a shop's after
:func:`oms.attach`); its messages carry the shop task's name in ``task``. A worker
that has not registered that task leaves the step to one that has: a fleet in the
middle of a deploy, or two workers sharing a queue with different modules, must
not fail an instance because its message reached the wrong one.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from celery import Task as CeleryTask
from celery.exceptions import Ignore

from oms.celery.app import engine_task
from oms.celery.compiler import TASK_STEP
from oms.celery.tasksteps import registered
from oms.settings import get_settings

from .subscribe import run_step
from .taskstep import run_task

__all__ = ["task_step"]

logger = logging.getLogger(__name__)


def execute(self: CeleryTask, instance_id: str, index: int, task: str, item: int | None = None, items: int = 1,
            branches: list[int] | None = None, **_: Any) -> Any:
    """Claim the step (or a chunk's items or branches), run the shop's task ``task`` once each, record the outcomes
    (see :func:`act.subscribe.run_step`). Without ``task`` registered here nothing is claimed: the step stays
    queued, and the reconciler publishes it again after ``OMS_RECONCILE_AFTER`` for a worker that has it."""
    worker = f"{self.request.hostname}"
    celery_task = registered(task)
    if celery_task is None:
        logger.warning("step %s of %s names task %r, which is not registered on worker %s: left queued for a worker "
                       "that has it (start one with the module that defines it: -I, or the app's include); the "
                       "reconciler offers it again after OMS_RECONCILE_AFTER (%gs)", index, instance_id, task, worker,
                       get_settings().reconcile_after)
        raise Ignore()
    return run_step(worker, partial(run_task, celery_task), instance_id, index, item, items, branches)


task_step = engine_task(TASK_STEP, execute, bind=True)
