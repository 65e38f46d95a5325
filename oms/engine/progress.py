"""An instance moving through its graph, in Python: the rows a start, a rerun or a transaction adds.

The counters live on the instance row (``waiting``: a join's predecessors not
done, a running mapped step's items not done; ``steps_left``). :class:`Progress`
moves them for what one transaction decides, under the instance's row lock: a
start (its roots), a rerun (steps that never started), and the transactional path
of a finished attempt (:func:`oms.engine.plan.apply`). The one-statement path on
PostgreSQL counts the same joins down in SQL (:mod:`oms.store.statements`), the
successors it offers decided here, by the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..exceptions import InvalidPayload, TooManyItems
from ..model.definitions import Definition
from ..settings import get_settings
from ..states import EventKind
from ..store.events import step_event
from .rows import queued_event, task_row


class MapError(Exception):
    """A mapped step's list cannot be read, or has too many items: the instance fails (or does not start)."""

    def __init__(self, step_id: str, reason: str, cause: InvalidPayload | None = None) -> None:
        self.step_id, self.reason, self.cause = step_id, reason, cause
        super().__init__(f"step {step_id!r} cannot start: {reason}")


def map_items(definition: Definition, index: int, payload: dict[str, Any], results: dict[str, Any]) -> list[Any]:
    """The items of mapped step ``index``, or :class:`MapError` (not a list; over ``OMS_MAX_MAP_ITEMS``)."""
    path = definition.graph.maps[index]
    assert path is not None
    step_id = definition.steps[index].id
    try:
        items = path.resolve(payload, results)
    except ValueError as exc:
        raise MapError(step_id, str(exc)) from None
    limit = get_settings().max_map_items
    if len(items) > limit:
        too_many = TooManyItems(path.text, len(items), limit)
        raise MapError(step_id, str(too_many), too_many)
    return items


@dataclass
class Progress:
    """An instance's counters and results as one transaction moves them, and the rows it adds."""

    definition: Definition
    instance_id: str
    payload: dict[str, Any]
    now: datetime
    results: dict[str, Any]
    waiting: dict[str, int]
    steps_left: int
    current_step: int
    offered: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, definition: Definition, instance: Any, now: datetime) -> Progress:
        """The progress of an instance row (or a row's values) as it stands."""
        return cls(definition, instance.id, instance.payload, now, dict(instance.results), dict(instance.waiting),
                   instance.steps_left, instance.current_step)

    def offer(self, index: int) -> None:
        """Make step ``index`` ready: one task, or one per item of a mapped step (none: done at once)."""
        graph = self.definition.graph
        self.current_step = max(self.current_step, index)
        if graph.maps[index] is None:
            self._queue(task_row(self.instance_id, self.payload, self.definition, index, self.now))
            return
        items = map_items(self.definition, index, self.payload, self.results)
        step_id = self.definition.steps[index].id
        self.events.append(step_event(EventKind.STEP_MAPPED, self.instance_id, self.now, step_id, items=len(items)))
        if not items:
            self.results[step_id] = []
            self.step_done(index)
            return
        self.waiting[str(index)] = len(items)
        for position, item in enumerate(items):
            self._queue(task_row(self.instance_id, self.payload, self.definition, index, self.now,
                                 item_index=position, item=item))

    def _queue(self, row: dict[str, Any]) -> None:
        self.offered.append(row)
        self.events.append(queued_event(row, self.now))

    def step_done(self, index: int) -> None:
        """Step ``index`` is done: its successors whose predecessors are all done now become ready."""
        graph = self.definition.graph
        self.steps_left -= 1
        for following in graph.successors[index]:
            if graph.is_join(following):
                key = str(following)
                self.waiting[key] -= 1
                if self.waiting[key] > 0:
                    continue
            self.offer(following)

    def item_done(self, index: int) -> bool:
        """An item of mapped step ``index`` is done; ``True`` if it was the last (the step is then done)."""
        key = str(index)
        self.waiting[key] -= 1
        return self.waiting[key] == 0


def start_progress(definition: Definition, instance: dict[str, Any], now: datetime) -> Progress:
    """A new instance's first steps (its roots; mapped ones expanded from the payload), as rows.

    Raises :class:`MapError` when a mapped step's list cannot be read from the payload.
    """
    progress = Progress(definition, instance["id"], instance["payload"], now, {}, dict(instance["waiting"]),
                        instance["steps_left"], 0)
    for root in definition.graph.roots:
        progress.offer(root)
    return progress
