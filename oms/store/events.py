"""The event log's rows: what an event is made of, and writing one.

Every transition writes its events in its own transaction, from these builders
(in Python) or from :func:`oms.store.moves.task_events` (in SQL, for rows a
statement moved): one shape, whichever path wrote it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ..states import EventKind
from .tables import EventRow


def _event(kind: EventKind, instance_id: str, now: datetime, task_id: str | None, step_id: str | None,
           attempt: int | None, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "instance_id": instance_id,
        "task_id": task_id,
        "step_id": step_id,
        "attempt": attempt,
        "kind": kind,
        "at": now,
        "data": {k: v for k, v in data.items() if v is not None},
    }


def event(kind: EventKind, instance_id: str, now: datetime, **data: Any) -> dict[str, Any]:
    """An event of an instance; ``data`` keys whose value is ``None`` are left out."""
    return _event(kind, instance_id, now, None, None, None, data)


def step_event(kind: EventKind, instance_id: str, now: datetime, step_id: str, **data: Any) -> dict[str, Any]:
    """An event of a step as a whole (a mapped step expanding into its items)."""
    return _event(kind, instance_id, now, None, step_id, None, data)


def task_event_row(kind: EventKind, task: Any, now: datetime, **data: Any) -> dict[str, Any]:
    """An event of ``task`` (a row object or a dict of task values); a mapped step's carries its item index."""
    def get(name: str) -> Any:
        return task.get(name) if isinstance(task, dict) else getattr(task, name, None)

    return _event(kind, get("instance_id"), now, get("id"), get("step_id"), get("attempt"),
                  {**data, "item_index": get("item_index")})


def record(session: Session, kind: EventKind, instance_id: str, now: datetime, task: Any = None,
           **data: Any) -> None:
    """Write an event in the session's transaction: of a task when ``task`` is given, else of the instance."""
    values = task_event_row(kind, task, now, **data) if task is not None else event(kind, instance_id, now, **data)
    session.add(EventRow(**values))
