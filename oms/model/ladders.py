"""Escalation ladders: rungs that fire at shares of an SLA, or after its deadline, each doing what it says.

A rung's ``at`` is a share of the SLA (``"50%"``, at most ``100%``) or a duration after
the deadline (``"100% + 1bd"``, ``"100% + 2h"``). Its moment is computed from the
clock's stored deadline, ``expires_at``, which already moves with pauses and calendar
changes: a share ``p`` lies ``(100 - p)%`` of the SLA before it, and ``100% + d`` lies
``d`` after it, both in the calendar's working time when the clock has one (else wall
time). So a rung moves with its clock, whatever moved it. Pure arithmetic and rules;
the scan fires the rungs (:mod:`oms.sla.ladders`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from .names import check_free, check_name
from .worktime import BusinessDays, Schedule, parse_sla

#: ``notify`` targets: the step's holder or candidates, a person, a group, or a channel's name.
ASSIGNEE = "assignee"
USER, GROUP = "user:", "group:"
#: The most targets a rung notifies, and the most rungs a ladder has.
MAX_TARGETS = 20
MAX_RUNGS = 20
#: The longest topic a rung may name: its escalations are instances of ``oms.escalation.<topic>``.
MAX_RUNG_TOPIC = 128 - len("oms.escalation.")

_AT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*(?:\+\s*(.+?))?\s*")


@dataclass(frozen=True)
class At:
    """A rung's moment on its clock: ``share`` of the SLA (0 to 1], then ``after`` the deadline (only at 100%)."""

    share: float
    after: timedelta | BusinessDays | None = None


def parse_at(value: object) -> At:
    """``"50%"`` or ``"100% + 1bd"`` as an :class:`At`, else ``ValueError`` saying what is accepted."""
    found = _AT.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError(f"at {value!r} is not a share of the SLA ('50%') nor a time after its deadline "
                         "('100% + 1bd', '100% + 2h')")
    share = float(found.group(1)) / 100
    if share <= 0:
        raise ValueError(f"at {value!r}: a rung fires after the clock starts, at more than 0%")
    if share > 1:
        raise ValueError(f"at {value!r}: a share is at most 100%; for a moment after the deadline write "
                         "'100% + <duration>' ('100% + 4h', '100% + 1bd')")
    if found.group(2) is None:
        return At(share)
    if share != 1:
        raise ValueError(f"at {value!r}: a duration is added to the deadline only: write '100% + {found.group(2)}'")
    return At(share, parse_sla(found.group(2)))


class Assignment(BaseModel):
    """Who may claim a human step: these people, and anyone in these groups (``oms user create --groups``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: list[str] = Field(default_factory=list, max_length=100)
    groups: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("users", "groups")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return [check_name(name, "a user or group name") for name in value]

    @model_validator(mode="after")
    def _someone(self) -> Self:
        if not self.users and not self.groups:
            raise ValueError("assign names nobody: give users and/or groups")
        return self


class Rung(BaseModel):
    """One rung of a ladder: when it fires (``at``) and what it does (at least one of the four)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: As written: ``"50%"``, ``"100% + 1bd"``.
    at: str
    #: Whom to tell: ``assignee``, ``user:<name>``, ``group:<name>``, or a channel's name (``oms_channels``).
    notify: list[str] = Field(default_factory=list)
    #: A human step's new candidates: its claim goes back (``task.released``), its ``assign`` changes.
    reassign: Assignment | None = None
    #: Start an escalation task on this topic, for code (as the default ladder's ``sla_violation``).
    topic: str | None = None
    #: A breach policy applied to the open attempt: ``fail`` (the instance fails) or ``retry``.
    policy: Literal["fail", "retry"] | None = None
    _when: At = PrivateAttr()

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: object) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"at {value!r}: write a share with its percent sign ('{value}%')")
        parse_at(value)
        return str(value).strip()

    @field_validator("notify")
    @classmethod
    def _notify(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_TARGETS:
            raise ValueError(f"notify names {len(value)} targets: at most {MAX_TARGETS}")
        for target in value:
            check_target(target)
        if len(set(value)) != len(value):
            raise ValueError(f"notify names {sorted(t for t in set(value) if value.count(t) > 1)[0]!r} twice")
        return value

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_free(check_name(value, "topic"), "topic")
        if len(value) > MAX_RUNG_TOPIC:
            raise ValueError(f"topic {value[:40]!r}… is {len(value)} characters long: a rung's is at most "
                             f"{MAX_RUNG_TOPIC}")
        return value

    @model_validator(mode="after")
    def _does_something(self) -> Self:
        if not (self.notify or self.reassign or self.topic or self.policy):
            raise ValueError("an empty rung: give it notify, reassign, topic or policy")
        self._when = parse_at(self.at)
        return self

    @property
    def when(self) -> At:
        return self._when


def check_target(target: object) -> str:
    """A ``notify`` target as written, or ``ValueError`` naming it (that it exists is checked on save)."""
    if not isinstance(target, str):
        raise ValueError(f"notify target {target!r} must be a string")
    if target == ASSIGNEE:
        return target
    for prefix in (USER, GROUP):
        if target.startswith(prefix):
            check_name(target.removeprefix(prefix), f"notify target {target!r}: the name")
            return target
    if ":" in target:
        raise ValueError(f"notify target {target!r}: expected assignee, user:<name>, group:<name> or a channel's name")
    return check_name(target, "notify target (a channel's name)")


def check_ladder(rungs: list[Rung], where: str, *, human: bool, workflow: bool, calendar: str | None) -> None:
    """Refuse a ladder its owner cannot have, naming the rung (``steps[3].escalations[2]: ...``)."""
    if len(rungs) > MAX_RUNGS:
        raise ValueError(f"{where}escalations: {len(rungs)} rungs, at most {MAX_RUNGS}")
    for index, rung in enumerate(rungs):
        name = f"{where}escalations[{index}]"
        if index and not _after(rung.when, rungs[index - 1].when):
            raise ValueError(f"{name}: at {rung.at!r} is not after the rung before it ({rungs[index - 1].at!r}): "
                             "rungs go in the order they fire")
        if isinstance(rung.when.after, BusinessDays) and calendar is None:
            raise ValueError(f"{name}: at {rung.at!r} counts business days: name the calendar they are counted in "
                             "(calendar: ...)")
        if ASSIGNEE in rung.notify and not human:
            raise ValueError(f"{name}: notify assignee: " + ("a workflow has no assignee (name users, groups or "
                             "channels)" if workflow else "only a human step (assign) has one"))
        if rung.reassign is not None and (workflow or not human):
            raise ValueError(f"{name}: reassign: " + ("a workflow's ladder cannot reassign (a step's can)" if workflow
                             else "only a human step (assign) is reassigned"))
        if rung.policy is not None and workflow:
            raise ValueError(f"{name}: policy: a workflow's ladder applies no breach policy (a step's does)")


def _after(later: At, earlier: At) -> bool:
    """Whether ``later`` comes after ``earlier``; times after the deadline in hours and in business days are not
    compared (they fire in the order written)."""
    if later.share != earlier.share:
        return later.share > earlier.share
    if earlier.after is None or later.after is None:
        return earlier.after is None and later.after is not None
    if type(later.after) is not type(earlier.after):
        return True
    if isinstance(later.after, BusinessDays) and isinstance(earlier.after, BusinessDays):
        return later.after.days > earlier.after.days
    assert isinstance(later.after, timedelta) and isinstance(earlier.after, timedelta)
    return later.after > earlier.after


@dataclass(frozen=True)
class Span:
    """What a rung's moment is computed from: the clock's start, its stored deadline, the SLA and the time paused."""

    ready_at: datetime
    expires_at: datetime
    sla: timedelta | BusinessDays
    hours: Schedule | None
    #: Seconds paused on the clock so far (working time under a calendar): business days' length leaves them out.
    paused_s: float = 0.0

    def length(self) -> timedelta:
        """The SLA's length on its clock: itself, or what its business days span in working time."""
        if isinstance(self.sla, timedelta):
            return self.sla
        assert self.hours is not None, "business days need a calendar (checked when the definition is made)"
        opened = self.hours.next_open(self.ready_at)
        return self.hours.between(opened, self.expires_at) - timedelta(seconds=self.paused_s)


def moment(at: At, span: Span) -> datetime:
    """When a rung at ``at`` fires on the clock ``span``: back from the deadline by the share left, or after it."""
    hours = span.hours
    if at.after is not None:
        if hours is None:
            assert isinstance(at.after, timedelta), "business days need a calendar (checked when the ladder is made)"
            return span.expires_at + at.after
        return hours.deadline(span.expires_at, at.after)
    back = span.length() * (1 - at.share)
    if hours is None:
        return span.expires_at - back
    opened = hours.next_open(span.ready_at)
    return hours.add(opened, max(hours.between(opened, span.expires_at) - back, timedelta(0)))


def next_rung(rungs: list[Rung] | None, fired: int | None, span: Span | None) -> datetime | None:
    """When the first rung not fired yet fires (``None``: no ladder, or every rung fired)."""
    if not rungs or span is None or (fired or 0) >= len(rungs):
        return None
    return moment(rungs[fired or 0].when, span)
