"""The demo's run: save the workflow, start the processes, start the registrations, watch, sum up."""

from __future__ import annotations

import time
from datetime import datetime

from rich.console import Console
from rich.live import Live
from sqlalchemy import select

from ..durations import utcnow
from ..engine.starts import start_workflow
from ..reads import get_instance, history, sla_summary
from ..settings import get_settings
from ..store.db import transaction
from ..store.tables import InstanceRow
from .processes import DemoError, start_processes, stop_processes
from .view import FINAL, Escalation, Snapshot, live_table, summary
from .workflow import EPA_DEMO, LATE_IRS_SECONDS, PULL_TOPIC, payload

ESCALATION_WORKFLOWS = ("oms.sla_violation", "oms.sla_warning")


def _escalations(instance_ids: set[str], since: datetime) -> list[Escalation]:
    with transaction() as session:
        rows = session.scalars(
            select(InstanceRow)
            .where(InstanceRow.workflow_id.in_(ESCALATION_WORKFLOWS), InstanceRow.created_at >= since)
            .order_by(InstanceRow.created_at)
        ).all()
    return [
        Escalation(id=r.id, action=r.payload["action"], instance_id=r.payload["instance_id"], step=r.payload["step"],
                   overdue_by_s=r.payload.get("overdue_by_s") or 0.0, status=r.status, handled=r.results.get("handle"))
        for r in rows
        if r.payload.get("instance_id") in instance_ids
    ]


def _snapshot(ids: list[str], since: datetime) -> Snapshot:
    return Snapshot(utcnow(), [get_instance(i) for i in ids], _escalations(set(ids), since))


def _past_validation(snapshot: Snapshot) -> bool:
    """Every registration so far has had its tax id checked: the late one will not hold them up."""
    return all(any(t.step_id == PULL_TOPIC and t.status == "done" for t in i.tasks) or i.status in FINAL
               for i in snapshot.instances)


def run(instances: int = 4, timeout: float = 50.0, console: Console | None = None) -> bool:
    """Run the demo; True when every registration is done and the late step was escalated and handled."""
    console = console or Console()
    settings = get_settings()
    version = EPA_DEMO.save()
    console.print(f"Workflow [bold]{EPA_DEMO.id}[/] version {version}: the seed's steps and SLAs, except "
                  f"{PULL_TOPIC} within 2s (instead of 2m) so that a slow check turns red.")
    console.print(f"Database {settings.database_url}, broker {settings.broker_url}; logs in {settings.home}/demo-*.log")
    console.print("Starting a Celery worker with beat (push steps, escalations, SLA scan every second) "
                  "and the seed's tax validator as a pull worker…")
    since = utcnow()
    try:
        processes = start_processes([settings.sla_violation_topic, settings.sla_warning_topic])
    except DemoError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return False
    ids: list[str] = []
    late: str | None = None
    try:
        ids = [start_workflow(EPA_DEMO.id, payload=payload(n)) for n in range(1, instances)]
        console.print(f"Started {len(ids)} registrations; the last one arrives once they are past {PULL_TOPIC}, "
                      f"and the IRS takes {LATE_IRS_SECONDS}s to check it.\n")
        deadline = time.monotonic() + timeout
        with Live(console=console, refresh_per_second=4) as live:
            while True:
                snapshot = _snapshot(ids, since)
                if late is None and _past_validation(snapshot):
                    late = start_workflow(EPA_DEMO.id, payload=payload(instances, late=True))
                    ids.append(late)
                    snapshot = _snapshot(ids, since)
                live.update(live_table(snapshot))
                if (late is not None and snapshot.settled) or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
        console.print()
    finally:
        stop_processes(processes)
    snapshot = _snapshot(ids, since)
    events = [f"{e.at:%H:%M:%S.%f}"[:-3] + f"  {e.kind:<20} {e.step_id or ''}" for e in history(late)] if late else []
    summary(console, snapshot, sla_summary(since=since), events)
    return _verdict(console, snapshot, late)


def _verdict(console: Console, snapshot: Snapshot, late: str | None) -> bool:
    problems = []
    if not snapshot.settled:
        problems.append("not every registration and escalation finished in time")
    if any(i.status != "done" for i in snapshot.instances):
        problems.append("some registrations did not finish done")
    late_red = [t for i, t in snapshot.red_steps() if i.id == late]
    handled = [e for e in snapshot.escalations if e.action == "sla_violation" and e.instance_id == late
               and e.status == "done"]
    if not late_red or not handled:
        problems.append("the late registration's step was not recorded red and escalated")
    for problem in problems:
        console.print(f"[bold red]demo failed:[/] {problem}")
    return not problems
