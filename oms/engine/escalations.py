"""Escalations: each SLA warning and breach becomes a task on a topic, for a governance agent to take.

An escalation is an instance of one of the engine's own one-step workflows
(``oms.sla_warning``, ``oms.sla_violation``), whose step is offered on the
``sla_warning`` or ``sla_violation`` topic (``OMS_SLA_*_TOPIC``). It is started in
the transaction that records the light's move, so an escalation exists exactly
when its event does; many are started with one bulk insert per action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from ..celery.dispatch import Dispatch
from ..model.definitions import Definition, system_workflow
from ..settings import get_settings
from ..store.catalog import ensure_saved, saved_in
from ..store.tables import InstanceRow, TaskRow
from .starts import start_instances

#: The two kinds of escalation: a light turned yellow, or red.
WARNING, VIOLATION = "sla_warning", "sla_violation"


@lru_cache(maxsize=8)
def _definition(action: str, topic: str) -> tuple[Definition, str]:
    """The system workflow for ``action`` on ``topic``, with its digest (computed once)."""
    workflow: Definition = system_workflow(
        {"id": f"oms.{action}", "description": f"Escalation of an SLA event ({action})",
         "steps": [{"id": "handle", "topic": topic, "sla": "24h"}]}
    )
    return workflow, workflow.digest()


def escalation_workflow(action: str) -> tuple[Definition, int]:
    """The system workflow that carries ``action`` (``sla_violation``/``sla_warning``), and its version.

    Saved once per process and database: call it before a transaction that escalates (SQLite has one writer,
    and saving is another).
    """
    settings = get_settings()
    topic = settings.sla_violation_topic if action == VIOLATION else settings.sla_warning_topic
    workflow, digest = _definition(action, topic)
    return workflow, ensure_saved(workflow, digest)


#: A rung's escalation (``topic:`` on a ladder's rung): an instance of ``oms.escalation.<topic>``.
RUNG = "escalation"


@lru_cache(maxsize=64)
def rung_definition(topic: str) -> tuple[Definition, str]:
    """The system workflow of a rung's escalations on ``topic``, with its digest (computed once)."""
    workflow: Definition = system_workflow(
        {"id": f"oms.{RUNG}.{topic}", "description": f"Escalation of an SLA by a ladder's rung, on {topic}",
         "steps": [{"id": "handle", "topic": topic, "sla": "24h"}]}
    )
    return workflow, workflow.digest()


def rung_workflow(session: Session, topic: str) -> tuple[Definition, int]:
    """The system workflow that carries a rung's escalation on ``topic``, and its version, looked up in the scan's
    transaction (saved with the workflow whose ladder names it; else saved here)."""
    workflow, digest = rung_definition(topic)
    return workflow, saved_in(session, workflow, digest)


def task_payload(action: str, task: TaskRow, now: datetime) -> dict[str, Any]:
    """The escalation of a step: which task (and which item of a mapped step) is late, and by how much."""
    item = {} if task.item_index is None else {"item_index": task.item_index}
    return {
        **item,
        "action": action,
        "task_id": task.id,
        "instance_id": task.instance_id,
        "workflow": task.workflow_id,
        "step": task.step_id,
        "topic": task.topic,
        "attempt": task.attempt,
        "status": task.status,
        "warn_at": task.warn_at.isoformat(),
        "expires_at": task.expires_at.isoformat(),
        "overdue_by_s": round(max((now - task.expires_at).total_seconds(), 0.0), 3),
    }


def instance_payload(action: str, instance: InstanceRow, definition: Definition, now: datetime) -> dict[str, Any]:
    """The escalation of a whole instance (its workflow's own ``sla``), naming the step it is at."""
    assert instance.expires_at is not None
    return {
        "action": action,
        "task_id": None,
        "instance_id": instance.id,
        "workflow": instance.workflow_id,
        "step": definition.steps[instance.current_step].id,
        "warn_at": instance.warn_at.isoformat() if instance.warn_at else None,
        "expires_at": instance.expires_at.isoformat(),
        "overdue_by_s": round(max((now - instance.expires_at).total_seconds(), 0.0), 3),
    }


@dataclass
class Escalations:
    """What one transaction escalates: started together (:meth:`start`), published once it has committed."""

    now: datetime
    warnings: int = 0
    violations: int = 0
    pending: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {WARNING: [], VIOLATION: []})
    #: Instance ids of the escalations started.
    started: list[str] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)

    def escalate(self, action: str, payload: dict[str, Any]) -> None:
        if action == WARNING:
            self.warnings += 1
        else:
            self.violations += 1
        self.pending[action].append(payload)

    def start(self, session: Session) -> None:
        """One bulk insert per action: a burst of thousands of breaches costs a few statements."""
        for action, payloads in self.pending.items():
            if not payloads:  # callers save only the definitions they use before the transaction:
                continue      # looking up another here could be a second writer, which SQLite blocks
            workflow, version = escalation_workflow(action)
            started = start_instances(session, workflow, version, payloads, self.now)
            self.started.extend(d.instance_id for d in started)
            self.dispatches.extend(started)
            payloads.clear()
