"""The success bodies of the API's routes, as typed models: what the OpenAPI document promises and clients get.

Most bodies are the engine's own models (:class:`~oms.reads.InstanceSummary`,
:class:`~oms.reads.Event`…); these are the small answers the routes make
themselves, and the views that add what a route computes at the moment of reading
(a step's light now, its timings).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from ..reads import InstanceSummary
from ..reads.instances import InstanceInfo, TaskInfo
from ..states import InstanceStatus, Light


class Started(BaseModel):
    """The instance a start made (201), or the one its ``Idempotency-Key`` made before (200)."""

    instance_id: str = Field(description="`wf-` and 32 hex digits.")


class Finished(BaseModel):
    """A task completed or failed by its holder."""

    status: Literal["done", "failed"]
    repeat: bool = Field(False, description="True: the holder sent this same completion again after it had "
                                            "succeeded; nothing changed.")


class LeaseExtended(BaseModel):
    lease_expires_at: str = Field(description="The claim's new expiry, ISO 8601.")


class Paused(BaseModel):
    paused: bool = Field(description="False: the task's clock was paused already.")


class Resumed(BaseModel):
    resumed: bool = Field(description="False: the task's clock was not paused.")


class InstanceState(BaseModel):
    """An instance's status after a cancel or a retry."""

    instance_id: str
    status: InstanceStatus


class Saved(BaseModel):
    """A definition saved: its version (unchanged when the definition was)."""

    version: int = Field(ge=1)


class CalendarSaved(BaseModel):
    """A calendar saved, and how many open steps' deadlines moved with it."""

    id: str
    rescheduled: int = Field(ge=0)


class WorkflowVersion(BaseModel):
    """One version of a definition, as saved (its steps, SLAs, calendar…)."""

    id: str
    version: int = Field(ge=1)
    definition: dict[str, Any] = Field(description="The definition as `PUT /v1/workflows/{id}` takes it.")


def _flat(name: str, model: type[BaseModel], doc: str, **more: Any) -> Any:
    """A model with ``model``'s fields (its computed ones as fields), then ``more``, replacing any of the same name;
    not a subclass, as ``model``'s methods have the names of the values read at the moment of the view."""
    fields: dict[str, Any] = {key: (info.annotation, info) for key, info in model.model_fields.items()}
    fields |= {key: (info.return_type, ...) for key, info in model.model_computed_fields.items()}
    return create_model(name, __doc__=doc, **(fields | more))


#: A step's attempt as the API shows it: its light now, and its timings.
TaskView = _flat(
    "TaskView", TaskInfo, "A step's attempt as the API shows it: its light now, and its timings.",
    light=(Light, Field(description="As of the read: the worse of the recorded light and its clock's.")),
    queue_wait_s=(float | None, Field(description="Seconds from offered to claimed.")),
    run_s=(float | None, Field(description="Seconds from claimed to finished.")),
    total_s=(float | None, Field(description="Seconds from offered to finished: what the SLA measures.")))
#: An instance as ``GET /v1/instances/{id}`` shows it.
InstanceView = _flat(
    "InstanceView", InstanceInfo, "An instance: status, steps with their lights, each attempt with its timings, "
    "and the results.",
    status=(InstanceStatus, ...),
    worst_light=(Light, Field(description="The worst of its own light and its steps': what lists show.")),
    tasks=(list[TaskView], ...))  # type: ignore[valid-type]


class InstancePage(BaseModel):
    """One page of instances, newest first; ``next_cursor`` fetches the next page (``None`` on the last)."""

    instances: list[InstanceSummary]
    next_cursor: str | None


class Health(BaseModel):
    status: Literal["ok"]


class ReadyCheck(BaseModel):
    name: str
    status: str
    detail: str


class Ready(BaseModel):
    status: Literal["ready"]
    checks: list[ReadyCheck]
