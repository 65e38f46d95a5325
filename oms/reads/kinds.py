"""What a step ended by a person, a signal or the clock shows besides its status: who holds it, what it waits for,
when it ends.

Read from the step's definition and its latest attempt's row, so that ``oms status``,
``get_instance`` and the HTTP API say the same: a human step queued for its groups or
held by a person, a waiting step's signal and whether one is kept for it, a timer's end.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from ..model.definitions import Step
from ..model.worktime import format_sla
from ..states import StepKind, TaskStatus


def kind_of(topic: str) -> str:
    """The kind of a step recorded on ``topic`` (the engine's ``oms.human``, ``oms.wait``, ``oms.timer``)."""
    return StepKind.of_topic(topic).value


class Attempt(Protocol):
    """The columns of an attempt's row read here."""

    status: str
    worker_id: str | None
    assign: dict[str, list[str]] | None
    wake_at: datetime | None


def kind_fields(step: Step, latest: Attempt | None, kept: set[str]) -> dict[str, Any]:
    """A step's kind and what that kind shows, as ``StepInfo`` fields; ``latest``: its newest attempt, if any;
    ``kept``: names of the instance's signals received before their steps were ready."""
    kind = step.kind
    fields: dict[str, Any] = {"kind": kind.value}
    if kind is StepKind.HUMAN:
        assert step.assign is not None
        fields["assign"] = (latest.assign if latest is not None and latest.assign is not None
                            else step.assign.model_dump())
        running = latest is not None and latest.status == TaskStatus.RUNNING
        fields["held_by"] = latest.worker_id if running and latest is not None else None
    elif kind is StepKind.WAIT:
        fields["wait_for"] = step.wait_for
        fields["signal_kept"] = step.wait_for in kept
    elif kind is StepKind.TIMER:
        assert step.sleep is not None
        fields["sleep"] = format_sla(step.sleep)
        fields["wake_at"] = None if latest is None else latest.wake_at
    return fields

