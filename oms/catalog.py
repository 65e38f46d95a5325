"""Workflows and calendars as users save and load them: the model's data, with its storage.

``Workflow(...).save()`` and ``Calendar(...).save()`` are the specification's API;
the data they carry (:mod:`oms.model`) knows no database, and the store
(:mod:`oms.store.catalog`) knows no rules of the model. This is where the two meet.
"""

from __future__ import annotations

from typing import Self

from .celery.tasksteps import resolve
from .engine.escalations import rung_definition
from .exceptions import InvalidDefinition
from .model.calendars import CalendarDefinition, check_calendar_id
from .model.definitions import Definition, check_workflow_id, system_workflow
from .model.ladders import GROUP, USER, Rung
from .model.limits import check_fits_broker
from .sla.reschedule import reschedule
from .store import catalog, targets
from .store.db import transaction


class Workflow(Definition):
    """An ordered list of steps (or a graph of them). ``save()`` stores it; a changed definition becomes a new
    version, and a running instance keeps the version it started with."""

    def save(self, database_url: str | None = None) -> int:
        """Store this definition and return its version (an unchanged definition keeps its own).

        A step naming a Celery task is checked against it when this process can import
        the task's module, and takes its retries from the task's ``autoretry_for`` options
        when it sets none of its own (:func:`oms.celery.tasksteps.resolve`).

        Raises:
            InvalidDefinition: a calendar it names is not saved; a task it names is not registered by its module,
                or retries for ever; an escalation ladder's rung names a person, group or channel that does not
                exist (``steps[3].escalations[2].notify: ...``).
            ConfigurationError: a step could hold its message longer than the Redis visibility timeout.
            Conflict: other processes kept saving versions of it at the same moment; nothing was saved.
        """
        workflow = resolve(self)
        check_fits_broker(workflow)
        if missing := self.calendars() - catalog.known_calendars(self.calendars(), database_url):
            raise InvalidDefinition(f"invalid workflow {self.id!r}: unknown calendar {min(missing)!r}: save it first "
                                    "(Calendar(...).save() or oms calendar register FILE)")
        self._check_targets(database_url)
        for topic in sorted({rung.topic for _, _, rung in self.ladders() if rung.topic}):
            # saved now, so that the scan's transaction only reads it (SQLite has one writer)
            catalog.save_definition(rung_definition(topic)[0], database_url)
        return catalog.save_definition(workflow, database_url)

    def _check_targets(self, database_url: str | None) -> None:
        """Refuse a ladder naming a person, group or channel that does not exist, naming its rung."""
        rungs = self.ladders()
        named = [(f"{where}escalations[{index}].{field}", target) for where, index, rung in rungs
                 for field, targets in (("notify", rung.notify), ("reassign", _reassigned(rung))) for target in targets]
        missing = targets.unknown((target for _, target in named), database_url)
        for place, target in named:
            if target in missing:
                raise InvalidDefinition(f"invalid workflow {self.id!r}: {place}: {missing[target]}")

    @classmethod
    def load(cls, workflow_id: str, version: int | None = None, database_url: str | None = None) -> Self:
        """The stored definition (the newest version unless ``version`` is given). Raises ``UnknownWorkflow``."""
        check_workflow_id(workflow_id)
        with transaction(database_url) as session:
            found, _ = catalog.load_definition(session, workflow_id, version)
        return system_workflow(found.spec(), cls)


class Calendar(CalendarDefinition):
    """When an agency works: opening hours per weekday in a time zone, less public holidays and closed days."""

    def save(self) -> int:
        """Store this calendar (replacing one with its id); return how many open clocks were computed again.

        When the calendar changed, the deadlines of the steps and instances still open
        under it are computed again from when their clocks started.
        """
        return reschedule(self.id) if catalog.save_calendar(self) else 0

    @classmethod
    def load(cls, calendar_id: str) -> Self:
        """The stored calendar. Raises :class:`~oms.exceptions.UnknownCalendar`."""
        return cls(**catalog.calendar_spec(check_calendar_id(calendar_id)))


def _reassigned(rung: Rung) -> list[str]:
    """The people and groups a rung reassigns its step to, as notify targets are written."""
    if rung.reassign is None:
        return []
    return [f"{USER}{name}" for name in rung.reassign.users] + [f"{GROUP}{name}" for name in rung.reassign.groups]


def list_calendars() -> list[Calendar]:
    """Every stored calendar, by id."""
    return [Calendar(**spec) for spec in catalog.calendar_specs()]
