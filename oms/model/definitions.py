"""Workflow definitions: validated with pydantic, stored as numbered versions."""

from __future__ import annotations

import hashlib
import json
import random
import time
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..durations import Duration
from ..exceptions import Conflict, InvalidArgument, InvalidDefinition, UnknownWorkflow, describe
from ..settings import get_settings
from ..store.db import transaction
from ..store.tables import DefinitionRow
from .calendars import known
from .graph import Graph, MapPath
from .jsonvalue import unstorable
from .names import NAME_PATTERN, SYSTEM_PREFIX, check_free, check_name
from .worktime import BusinessDays, Sla

__all__ = ["NAME_PATTERN", "SYSTEM_PREFIX", "Step", "Workflow", "check_name", "load_definition", "system_workflow"]

#: Set while building the engine's own workflows and definitions read back from the database: the
#: rules for new definitions (reserved names, ``OMS_MAX_*`` limits) held when they were saved, and
#: must not stop a running instance when a limit is lowered later.
_system: ContextVar[bool] = ContextVar("oms_system_workflow", default=False)
#: Tries at saving a new version while other processes save versions of the same workflow.
SAVE_ATTEMPTS = 20


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: When the light turns yellow: a duration after the clock starts…
    warn_at: Duration | None = None
    #: …or a fraction of the SLA (default: ``OMS_SLA_WARN_FRACTION``, 0.8).
    warn_fraction: float | None = Field(default=None, gt=0, lt=1)

    #: Count the SLA in this calendar's working time (:class:`oms.Calendar`); a step's wins over its workflow's.
    calendar: str | None = None

    def warn_delay(self, sla: timedelta, default_fraction: float) -> timedelta:
        """How long after the clock starts the light turns yellow (working time, under a calendar)."""
        if self.warn_at is not None:
            return self.warn_at
        return sla * self.fraction(default_fraction)

    def fraction(self, default_fraction: float) -> float:
        return self.warn_fraction if self.warn_fraction is not None else default_fraction

    def _check_warning(self, sla: timedelta | BusinessDays | None) -> None:
        if self.warn_at is not None and self.warn_fraction is not None:
            raise ValueError("give warn_at or warn_fraction, not both")
        if self.warn_at is not None and (sla is None or (isinstance(sla, timedelta) and self.warn_at >= sla)):
            raise ValueError(f"warn_at ({self.warn_at}) must be shorter than the sla ({sla})")

    @field_validator("calendar", mode="before")
    @classmethod
    def _calendar(cls, value: object) -> str | None:
        return None if value is None else check_name(value, "calendar id")


class Step(_Model):
    """One step: who does it (``topic``), how long it may take (``sla``), how often to retry."""

    id: str
    #: How long the step may take: ``"5m"``, ``"48h"`` (working time under a calendar), ``"2bd"`` (business days).
    sla: Sla
    #: Queue the step is offered on; defaults to the step id.
    topic: str = ""
    #: Retries after a failure before the instance fails.
    retries: int = Field(default=0, ge=0, le=1000)
    #: Delay before the first retry, doubling each time (``True`` means 1 s).
    retry_backoff: Duration | bool = False
    #: Cap on the retry delay.
    retry_backoff_max: Duration = timedelta(minutes=10)
    #: What a breach does besides escalating: ``escalate`` (the step keeps running),
    #: ``fail`` (the step and the instance fail) or ``retry`` (the step is offered again,
    #: as a failed attempt counted against ``retries``).
    on_breach: Literal["escalate", "fail", "retry"] = "escalate"
    #: Claims lost to dying workers (or lapsed pull leases) before the attempt fails
    #: with reason ``worker_lost``, so a step that kills its worker is not run forever.
    max_deliveries: int = Field(default=3, ge=1, le=100)
    #: The steps this one waits for (all of them done makes it ready); without it, the
    #: step before it in the list, so a plain list is a straight line. ``[]``: a first step.
    after: list[str] | None = None
    #: Run the step once per item of the JSON list at this path (``payload.<key>…`` or
    #: ``results.<step>.<key>…``); later steps see the list of the items' results.
    map: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_name(value, "step id")

    @field_validator("map")
    @classmethod
    def _map(cls, value: str | None) -> str | None:
        if value is not None:
            MapPath.parse(value)
        return value

    @model_validator(mode="after")
    def _topic(self) -> Self:
        topic = check_name(self.topic or self.id, "topic")
        if not _system.get():
            check_free(topic, "topic")
            settings = get_settings()
            if topic.lower() in (settings.sla_violation_topic.lower(), settings.sla_warning_topic.lower()):
                raise ValueError(f"topic {topic!r} carries the engine's escalations (OMS_SLA_VIOLATION_TOPIC, "
                                 "OMS_SLA_WARNING_TOPIC): a workflow's step cannot use it")
        object.__setattr__(self, "topic", topic)
        self._check_warning(self.sla)
        return self

    def retry_delay(self, failures: int) -> timedelta:
        """The delay before the retry that follows failure number ``failures`` (1-based)."""
        if self.retry_backoff is False:
            return timedelta(0)
        base: timedelta = timedelta(seconds=1) if self.retry_backoff is True else self.retry_backoff
        cap: timedelta = self.retry_backoff_max
        # doubled in floating point and capped before it becomes a timedelta, which would overflow; past 2**64
        # doublings (2.0**1024 itself overflows) every cap, at most a year, has long been reached
        doubled = base.total_seconds() * 2.0 ** min(max(failures - 1, 0), 64)
        return cap if doubled >= cap.total_seconds() else timedelta(seconds=doubled)


class Workflow(_Model):
    """An ordered list of steps. ``save()`` stores it; a changed definition becomes a new version."""

    id: str
    steps: list[Step] = Field(min_length=1)
    description: str = ""
    #: Optional deadline for the whole instance, counted from its start.
    sla: Sla | None = None
    #: The most a step's clock may stay paused in total (``act.pause_clock``); then it runs again.
    max_pause: Duration | None = None
    _graph: Graph = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidDefinition(f"invalid workflow {data.get('id', '?')!r}: {describe(exc)}") from None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> str:
        name = check_name(value, "workflow id")
        return name if _system.get() else check_free(name, "workflow id")

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("a workflow needs at least one step")
        most = get_settings().max_steps
        if isinstance(value, list) and len(value) > most and not _system.get():
            raise ValueError(f"a workflow has at most {most} steps (OMS_MAX_STEPS), this one {len(value)}")
        return value

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        most = get_settings().max_description_chars
        if _system.get():
            return value
        if len(value) > most:
            raise ValueError(f"the description is {len(value)} characters long, over the limit of {most} "
                             "(OMS_MAX_DESCRIPTION_CHARS)")
        if problem := unstorable(value):
            raise ValueError(f"the description holds {problem}: it cannot be stored")
        return value

    @property
    def is_system(self) -> bool:
        """The engine's own workflows (escalations) are not themselves held to SLAs."""
        return self.id.startswith(SYSTEM_PREFIX)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        self._check_warning(self.sla)
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"duplicate step id {step.id!r}")
            seen.add(step.id)
        self._graph = Graph.of(self.steps)
        if isinstance(self.sla, BusinessDays) and not self.calendar:
            raise ValueError(f"sla: {self.sla} counts business days: name the calendar they are counted in "
                             "(calendar: ...)")
        for number, step in enumerate(self.steps):
            if isinstance(step.sla, BusinessDays) and not self.calendar_of(number):
                raise ValueError(f"steps[{number}].sla: {step.sla} counts business days: name the calendar they "
                                 "are counted in (calendar: ... on the step or the workflow)")
        return self

    def calendar_of(self, index: int) -> str | None:
        """The calendar step ``index`` counts its SLA in: its own, else the workflow's (``None``: wall time)."""
        return self.steps[index].calendar or self.calendar

    def calendars(self) -> set[str]:
        """Every calendar this definition names."""
        return {name for name in [self.calendar, *(step.calendar for step in self.steps)] if name}

    @property
    def graph(self) -> Graph:
        """Predecessors, successors, straight runs and map paths of the steps, by index."""
        return self._graph

    # -- (de)serialisation -------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """The definition as JSON data, in the compact form it is stored in."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def digest(self) -> str:
        canonical = json.dumps(self.spec(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_file(cls, path: str | Path) -> Workflow:
        """Load a definition from a ``.yaml``/``.yml`` or ``.json`` file (see :mod:`oms.files`)."""
        from .files import read_definition

        return cls(**read_definition(Path(path)))

    # -- storage -------------------------------------------------------------

    def save(self, database_url: str | None = None) -> int:
        """Store this definition and return its version (unchanged definitions keep theirs)."""
        from .limits import check_fits_broker

        check_fits_broker(self)
        if missing := self.calendars() - known(self.calendars(), database_url):
            raise InvalidDefinition(f"invalid workflow {self.id!r}: unknown calendar {min(missing)!r}: save it first "
                                    "(Calendar(...).save() or oms calendar register FILE)")
        digest = self.digest()
        for attempt in range(SAVE_ATTEMPTS):
            if attempt:  # another process saved the same version first: back off a little, then read again
                time.sleep(random.uniform(0, 0.01 * attempt))
            try:
                with transaction(database_url) as session:
                    latest = _latest(session, self.id)
                    if latest is not None and latest.digest == digest:
                        return latest.version
                    version = (latest.version if latest else 0) + 1
                    session.add(
                        DefinitionRow(
                            workflow_id=self.id,
                            version=version,
                            spec=self.spec(),
                            digest=digest,
                            created_at=datetime.now(UTC),
                        )
                    )
                return version
            except IntegrityError:
                continue
        raise Conflict(f"could not save workflow {self.id!r}: other processes kept saving versions of it at the "
                       f"same time ({SAVE_ATTEMPTS} tries); nothing was saved, try again")

    @classmethod
    def load(cls, workflow_id: str, version: int | None = None, database_url: str | None = None) -> Workflow:
        """The stored definition (latest version unless ``version`` is given)."""
        check_workflow_id(workflow_id)
        with transaction(database_url) as session:
            return load_definition(session, workflow_id, version)[0]


def _latest(session: Session, workflow_id: str) -> DefinitionRow | None:
    newest = (
        select(func.max(DefinitionRow.version)).where(DefinitionRow.workflow_id == workflow_id).scalar_subquery()
    )
    return session.scalars(
        select(DefinitionRow).where(DefinitionRow.workflow_id == workflow_id, DefinitionRow.version == newest)
    ).first()


_saved_versions: dict[tuple[str, str, str], int] = {}


def clear_cache() -> None:
    """Forget which definitions this process saved (only needed when a database is wiped, as in tests)."""
    _saved_versions.clear()


def ensure_saved(workflow: Workflow, digest: str | None = None) -> int:
    """Save ``workflow`` once per process and database; return its version.

    Pass ``digest`` when the caller already has it, to keep hashing off hot paths.
    """
    from ..settings import get_settings

    key = (get_settings().database_url, workflow.id, digest or workflow.digest())
    if key not in _saved_versions:
        _saved_versions[key] = workflow.save()
    return _saved_versions[key]


def load_definition(session: Session, workflow_id: str, version: int | None = None) -> tuple[Workflow, int]:
    """``(definition, version)`` from the database; versions never change, so they are cached.

    The cache belongs to the session's :class:`~oms.db.Database`: a definition is
    parsed once per process and database.
    """
    cache: dict[tuple[str, int], Workflow] = session.info["database"].definitions
    if version is not None and (cached := cache.get((workflow_id, version))):
        return cached, version
    row = _latest(session, workflow_id) if version is None else session.get(DefinitionRow, (workflow_id, version))
    if row is None:
        raise UnknownWorkflow(workflow_id, version)
    definition = cache.get((workflow_id, row.version))
    if definition is None:
        definition = system_workflow(row.spec)  # checked when saved: later limits must not stop its instances
        cache[(workflow_id, row.version)] = definition
    return definition, row.version


def check_workflow_id(value: object) -> str:
    """A workflow id argument that can name a definition, or :class:`InvalidArgument` (not a database error)."""
    try:
        return check_name(value, "workflow id")
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def system_workflow(spec: dict[str, Any]) -> Workflow:
    """Build one of the engine's own workflows (ids starting ``oms.``, refused to users), or a stored definition."""
    token = _system.set(True)
    try:
        return Workflow(**spec)
    finally:
        _system.reset(token)
