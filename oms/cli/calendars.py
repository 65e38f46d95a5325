"""``oms calendar register | list | show``: the working hours SLAs are counted in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import yaml

from ..catalog import Calendar, list_calendars
from . import render
from .base import CONTEXT, OmsGroup, env_option


@click.group(cls=OmsGroup, context_settings=CONTEXT)
def calendar() -> None:
    """Register, list and show calendars (working hours, time zone, holidays).

    A workflow or step that names a calendar counts its SLA in its working time.

    \b
    Examples:
      oms calendar register examples/calendars/epa_business.yaml
      oms calendar show epa_business --days 14
    """


@calendar.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="FILE...")
def register(files: tuple[Path, ...]) -> None:
    """Save the calendars in FILE... (YAML or JSON, one each); print how many open steps moved.

    Every file is checked before anything is saved. Saving a changed calendar computes
    again the deadlines of the steps still open under it.

    \b
    Examples:
      oms calendar register examples/calendars/epa_business.yaml
    """
    found = [Calendar.from_file(path) for path in files]
    for item in found:
        moved = item.save()
        click.echo(f"{item.id} saved ({item.timezone}); {moved} open steps rescheduled")


@calendar.command("list", context_settings=CONTEXT)
@env_option("--json", "as_json", env="OMS_JSON", is_flag=True, help="Print the calendars as JSON.")
def list_(as_json: bool) -> None:
    """List saved calendars.

    \b
    Examples:
      oms calendar list
      oms calendar list --json
    """
    found = list_calendars()
    if as_json:
        click.echo(json.dumps([c.spec() for c in found], indent=2))
        return
    if not found:
        click.echo("(no calendars: oms calendar register FILE)", err=True)
        return
    rows = [[c.id, c.timezone, "; ".join(f"{d} {h if isinstance(h, str) else ','.join(h)}" for d, h in c.hours.items()),
             " ".join(filter(None, [c.holidays, c.subdivision])) or "-", str(len(c.closed))] for c in found]
    render.table(["calendar", "time zone", "hours", "holidays", "closed days"], rows)


@calendar.command(context_settings=CONTEXT)
@click.argument("calendar_id", metavar="ID")
@env_option("--json", "as_json", env="OMS_JSON", is_flag=True, help="Print JSON instead of YAML.")
@env_option("--days", env="OMS_CALENDAR_DAYS", type=click.IntRange(0, 366), default=0,
            help="Also list its working hours for this many days from today.")
def show(calendar_id: str, as_json: bool, days: int) -> None:
    """Print a calendar as YAML (or JSON), ready to edit and register again.

    \b
    Examples:
      oms calendar show epa_business --days 14
    """
    found = Calendar.load(calendar_id)
    if as_json:
        click.echo(json.dumps(found.spec(), indent=2))
    else:
        click.echo(yaml.safe_dump(found.spec(), sort_keys=False, allow_unicode=True).rstrip())
    if days:
        hours = found.schedule()
        today = datetime.now(UTC).astimezone(hours.zone).date()
        for offset in range(days):
            day = today + timedelta(days=offset)
            spans = [f"{a.astimezone(hours.zone):%H:%M}-{b.astimezone(hours.zone):%H:%M}"
                     for a, b in hours.intervals(day)]
            click.echo(f"# {day:%a %Y-%m-%d}  {', '.join(spans) or 'closed'}")
