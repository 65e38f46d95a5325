"""The shop's tasks: Celery's examples/django ones, a few the tests read the worker with, and two step handlers.

``add``, ``mul`` and ``xsum`` are plain ``@shared_task``s and stay so with the engine
attached; ``shop_review`` and ``sla_violation`` are the engine's topics, served by
the same worker (``celery -A proj worker -Q celery,oms,shop_review,sla_violation``).
"""

import json
import os
import time
from typing import Any

from celery import shared_task

from act import Task, subscribe


@shared_task
def add(x: int, y: int) -> int:
    return x + y


@shared_task
def mul(x: int, y: int) -> int:
    return x * y


@shared_task
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


@shared_task(sla="2s")
def inspect_site(site: str) -> str:
    """Tracked on its own (``sla=``) whenever it is called; the settings route it to a queue no worker serves."""
    return f"inspected {site}"


@shared_task(bind=True)
def options(self: Any) -> dict[str, Any]:
    """How this worker runs a shop task: its ack timing, serializer and routing, as the worker sees them."""
    delivery = self.request.delivery_info or {}
    return {
        "acks_late": self.acks_late,
        "reject_on_worker_lost": self.reject_on_worker_lost,
        "serializer": self.serializer,
        "ignore_result": self.ignore_result,
        "routing_key": delivery.get("routing_key"),
        "exchange": delivery.get("exchange"),
        "task_default_queue": self.app.conf.task_default_queue,
        "task_routes": self.app.conf.task_routes,
        "task_acks_late": self.app.conf.task_acks_late,
        "worker_prefetch_multiplier": self.app.conf.worker_prefetch_multiplier,
        "accept_content": list(self.app.conf.accept_content),
    }


@shared_task
def nap(seconds: float, log: str) -> str:
    """Write a line to ``log`` on every start, then sleep: the tests kill the worker mid-nap and count the starts."""
    with open(log, "a") as out:
        out.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return "rested"


@shared_task(acks_late=True)
def nap_late(seconds: float, log: str) -> str:
    """``nap`` asking for late acks itself: killed mid-run, it is delivered again (the tests' control)."""
    return nap(seconds, log)


@subscribe("shop_review")
def review(task: Task) -> dict[str, Any]:
    """A step of the shop's workflows, served by the shop's own worker."""
    return {"reviewed": task.payload.get("order"), "by": "shop"}


@subscribe("sla_violation")
def escalate(task: Task) -> str:
    """The shop's escalation: one line per breach, in the file ``SHOP_ESCALATIONS`` names (the tests count them)."""
    path = os.environ.get("SHOP_ESCALATIONS")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(task.payload, sort_keys=True, default=str) + "\n")
    return "success"
