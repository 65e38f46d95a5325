"""Workflow definitions: validated with pydantic, data that knows no database (see :mod:`oms.catalog` to save one)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ..durations import Duration
from ..exceptions import InvalidArgument, InvalidDefinition, describe
from ..settings import get_settings
from ..states import StepKind
from .files import read_definition
from .forms import MAX_FORM_CHARS, check_form, check_schema, validator
from .graph import Graph, MapPath
from .jsonvalue import unstorable
from .ladders import Assignment, Rung, check_ladder
from .names import NAME_PATTERN, SYSTEM_PREFIX, check_free, check_name
from .worktime import BusinessDays, Sla

__all__ = ["NAME_PATTERN", "SYSTEM_PREFIX", "Definition", "Step", "check_name", "check_task_name", "check_workflow_id",
           "system_workflow"]

#: A Celery task name a step may run: dotted Python-like names (``shop.tasks.add``), at most 200 characters.
_TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
MAX_TASK_NAME = 200
#: The most items of a mapped step one message offers (``chunk``).
MAX_CHUNK = 100
#: The engine's own tasks, which no step may name.
_ENGINE_TASK_PREFIXES = ("oms.", "act.")

#: Set while building the engine's own workflows and definitions read back from the database: the
#: rules for new definitions (reserved names, ``OMS_MAX_*`` limits) held when they were saved, and
#: must not stop a running instance when a limit is lowered later.
_system: ContextVar[bool] = ContextVar("oms_system_workflow", default=False)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: When the light turns yellow: a duration after the clock starts…
    warn_at: Duration | None = None
    #: …or a fraction of the SLA (default: ``OMS_SLA_WARN_FRACTION``, 0.8).
    warn_fraction: float | None = Field(default=None, gt=0, lt=1)

    #: Count the SLA in this calendar's working time (:class:`oms.Calendar`); a step's wins over its workflow's.
    calendar: str | None = None

    #: An escalation ladder on the SLA (:mod:`oms.model.ladders`): rungs fired once each, in order, in place of the
    #: default escalation tasks (``sla_warning``, ``sla_violation``). ``None``: the default; ``[]``: none at all.
    escalations: list[Rung] | None = None

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
    #: Required, but in a tracked workflow (:func:`oms.track`), where a task without one has only the instance's.
    sla: Sla | None = None
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
    #: A mapped step's items offered ``chunk`` to a message, as Celery's ``chunks``: the push worker that takes it
    #: claims them in one statement, runs them one after another and records their outcomes in one transaction;
    #: fewer messages and commits per item, but the items of one message do not run in parallel. On a step that is
    #: not mapped: it shares a message with up to ``chunk - 1`` sibling branches on its topic offered with it (a
    #: fan-out's), each allowing as many, none followed by a chain of its own (refused where it never could).
    chunk: int = Field(default=1, ge=1, le=MAX_CHUNK)
    #: Run this registered Celery task's function as the step (``"shop.tasks.add"``), not a topic's handler.
    #: Its message goes to the queue the app routes the task to, unless the step names a ``topic`` of its own.
    #: In a tracked workflow (:func:`oms.track`), the task the step stands for, published by Celery itself.
    task: str | None = None
    #: A human step: the people and groups who may claim it from their inbox (:func:`oms.inbox`).
    assign: Assignment | None = None
    #: A JSON Schema (draft 2020-12) the result must satisfy: the person's (a human step), or the signal's data.
    form: dict[str, Any] | None = None
    #: A waiting step: done when this signal arrives for its instance (:func:`oms.signal`); its data the result.
    wait_for: str | None = None
    #: A timer: done this long after it became ready (working time, or business days, under a calendar).
    sleep: Sla | None = None
    _form_validator: Any = PrivateAttr(default=None)

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

    @field_validator("task")
    @classmethod
    def _task(cls, value: str | None) -> str | None:
        return None if value is None else check_task_name(value)

    @field_validator("wait_for")
    @classmethod
    def _wait_for(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "signal name")

    @field_validator("form")
    @classmethod
    def _form(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value)) > MAX_FORM_CHARS:
            raise ValueError(f"the form is over {MAX_FORM_CHARS} characters of JSON")
        return None if value is None else check_schema(value)

    def check_result(self, result: dict[str, Any] | None) -> None:
        """Raise :class:`~oms.model.forms.FormError` if the step has a ``form`` and ``result`` does not fit it."""
        if self.form is None:
            return
        if self._form_validator is None:  # built once per definition a process holds
            self._form_validator = validator(self.form)
        what = "the result" if self.wait_for is None else f"the data of signal {self.wait_for!r}"
        check_form(self._form_validator, result, self.id, what)

    @property
    def kind(self) -> StepKind:
        """Who ends the step: a worker, a person (``assign``), a signal (``wait_for``) or the clock (``sleep``)."""
        if self.assign is not None:
            return StepKind.HUMAN
        if self.wait_for is not None:
            return StepKind.WAIT
        return StepKind.TIMER if self.sleep is not None else StepKind.WORKER

    def _check_kind(self) -> bool:
        """Refuse what a step ended by a person, a signal or the clock cannot have; ``True`` for such a step."""
        kinds = [name for name in ("assign", "wait_for", "sleep") if getattr(self, name) is not None]
        if len(kinds) > 1:
            raise ValueError(f"a step is ended by one of assign, wait_for or sleep, not {' and '.join(kinds)}")
        if self.form is not None and self.kind not in (StepKind.HUMAN, StepKind.WAIT):
            raise ValueError("form: only a human step (assign) or a waiting step (wait_for) has a form")
        if self.kind is StepKind.WORKER:
            return False
        own = self.kind.topic
        for name in ("task", "map"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name}: a {self.kind} step ({kinds[0]}) runs no worker and maps over nothing")
        if self.chunk > 1:
            raise ValueError(f"chunk: a {self.kind} step ({kinds[0]}) is offered to no worker, in no message")
        if self.topic and self.topic != own:
            raise ValueError(f"topic: a {self.kind} step ({kinds[0]}) is offered to no worker (its topic is {own!r})")
        if self.kind is StepKind.TIMER and self.sla is not None:
            raise ValueError("sla: a timer's clock is its sleep (it is yellow a minute, red five minutes after it "
                             "was due and did not end)")
        object.__setattr__(self, "topic", own)
        return True

    @model_validator(mode="after")
    def _topic(self) -> Self:
        if self._check_kind():
            self._check_warning(self.sla)
            return self
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


class Definition(_Model):
    """A workflow: its steps, its own SLA and calendar. :class:`oms.Workflow` adds ``save()`` and ``load()``."""

    id: str
    steps: list[Step] = Field(min_length=1)
    description: str = ""
    #: Optional deadline for the whole instance, counted from its start.
    sla: Sla | None = None
    #: The most a step's clock may stay paused in total (``act.pause_clock``); then it runs again.
    max_pause: Duration | None = None
    #: Plain Celery work watched by :func:`oms.track`: Celery publishes its steps, never the engine.
    tracked: bool = False
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
        signals: dict[str, str] = {}
        self._check_branch_chunks()
        for number, step in enumerate(self.steps):
            if self.tracked and step.kind is not StepKind.WORKER:
                raise ValueError(f"steps[{number}]: a tracked workflow's steps are Celery tasks, not {step.kind} steps")
            if step.wait_for is not None:
                if step.wait_for in signals:
                    raise ValueError(f"steps[{number}].wait_for: steps {signals[step.wait_for]!r} and {step.id!r} "
                                     f"both wait for {step.wait_for!r}: give each its own signal")
                signals[step.wait_for] = step.id
            if isinstance(step.sleep, BusinessDays) and not self.calendar_of(number):
                raise ValueError(f"steps[{number}].sleep: {step.sleep} counts business days: name the calendar they "
                                 "are counted in (calendar: ... on the step or the workflow)")
            if step.sla is None and not self.tracked and step.kind is not StepKind.TIMER:
                raise ValueError(f"steps[{number}].sla: Field required (step {step.id!r}; only a tracked workflow's "
                                 "steps may have none)")
            if isinstance(step.sla, BusinessDays) and not self.calendar_of(number):
                raise ValueError(f"steps[{number}].sla: {step.sla} counts business days: name the calendar they "
                                 "are counted in (calendar: ... on the step or the workflow)")
            if step.escalations is not None:
                if step.sla is None:
                    raise ValueError(f"steps[{number}].escalations: a ladder climbs the step's sla, and it has none")
                check_ladder(step.escalations, f"steps[{number}].", human=step.kind is StepKind.HUMAN, workflow=False,
                             calendar=self.calendar_of(number))
        if self.escalations is not None:
            if self.sla is None:
                raise ValueError("escalations: a workflow's ladder climbs the workflow's own sla, and it has none")
            check_ladder(self.escalations, "", human=False, workflow=True, calendar=self.calendar)
        return self

    def _check_branch_chunks(self) -> None:
        """Refuse a ``chunk`` on a step that is not mapped where it could never let the step share a message
        (:meth:`branch_chunk`): the step starts a straight run, or has no sibling branch (a step after the same
        steps, on its topic, that may share one) to share one with."""
        if self.tracked:
            return
        graph = self._graph
        asked = [n for n, step in enumerate(self.steps) if step.chunk > 1 and step.map is None]
        for number in asked:
            if (following := graph.chained(number)) is not None:
                step = self.steps[number]
                raise ValueError(f"steps[{number}].chunk: step {step.id!r} starts a straight run (then "
                                 f"{self.steps[following].id!r}) that one Celery chain carries: only branches no "
                                 "chain follows share a message")

        def key(index: int) -> tuple[object, ...]:
            return graph.predecessors[index], self.steps[index].topic, self.steps[index].task

        siblings = Counter(key(number) for number in asked)
        for number in asked:
            if siblings[key(number)] < 2:
                step = self.steps[number]
                raise ValueError(f"steps[{number}].chunk: step {step.id!r} has no sibling branch to share a message "
                                 f"with: a step after the same steps, on topic {step.topic!r}, with a chunk, starting "
                                 "no straight run")

    def branch_chunk(self, index: int) -> int:
        """How many sibling branches, itself included, step ``index`` may share a message with: its ``chunk``; 1 for
        a mapped step (its chunk is its items'), a step starting a straight run (one Celery chain carries it) and a
        step no worker runs. The one home of that rule (:func:`oms.celery.dispatch.chunked` applies it)."""
        step = self.steps[index]
        if step.chunk == 1 or step.map is not None or self.graph.chained(index) is not None \
                or not self.graph.worker(index):
            return 1
        return step.chunk

    def ladders(self) -> list[tuple[str, int, Rung]]:
        """Every rung of the workflow's ladder and its steps', with where it stands (``steps[3].``) and its index."""
        found = [("", index, rung) for index, rung in enumerate(self.escalations or [])]
        for number, step in enumerate(self.steps):
            found += [(f"steps[{number}].", index, rung) for index, rung in enumerate(step.escalations or [])]
        return found

    def calendar_of(self, index: int) -> str | None:
        """The calendar step ``index`` counts its SLA in: its own, else the workflow's (``None``: wall time)."""
        return self.steps[index].calendar or self.calendar

    def calendars(self) -> set[str]:
        """Every calendar this definition names."""
        return {name for name in [self.calendar, *(step.calendar for step in self.steps)] if name}

    def waits_for(self) -> dict[str, int]:
        """The signals this workflow's steps wait for, each with its step's index."""
        return {step.wait_for: index for index, step in enumerate(self.steps) if step.wait_for is not None}

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
    def from_file(cls, path: str | Path) -> Self:
        """Load a definition from a ``.yaml``/``.yml`` or ``.json`` file (see :mod:`oms.model.files`)."""
        return cls(**read_definition(Path(path)))


def check_workflow_id(value: object) -> str:
    """A workflow id argument that can name a definition, or :class:`InvalidArgument` (not a database error)."""
    try:
        return check_name(value, "workflow id")
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def check_task_name(value: str) -> str:
    """``value`` if it can name a shop's Celery task to run as a step, else ``ValueError`` saying why."""
    if len(value) > MAX_TASK_NAME:
        raise ValueError(f"task {value[:40]!r}… is {len(value)} characters long: at most {MAX_TASK_NAME}")
    if not _TASK_NAME.fullmatch(value):
        raise ValueError(f"task {value!r} is not a dotted Celery task name (e.g. 'shop.tasks.add')")
    if value.lower().startswith(_ENGINE_TASK_PREFIXES):
        raise ValueError(f"task {value!r} is one of the engine's own (oms.*, act.*): a step cannot run it")
    return value


D = TypeVar("D", bound="Definition")


def system_workflow(spec: dict[str, Any], kind: type[D] = Definition) -> D:  # type: ignore[assignment]
    """Build one of the engine's own workflows (ids starting ``oms.``, refused to users), or a stored definition
    (checked when it was saved: limits lowered since must not stop its instances)."""
    token = _system.set(True)
    try:
        return kind(**spec)
    finally:
        _system.reset(token)
