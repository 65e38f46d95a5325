"""What the demo shows: a live table of registrations and their steps' lights, then a summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.console import Console, Group
from rich.table import Table

from ..model.worktime import format_sla
from ..reads import InstanceInfo, StepSummary, TaskInfo
from ..store.lights import light_at
from .workflow import EPA_DEMO

#: Instance statuses after which nothing changes.
FINAL = ("done", "failed", "cancelled")
_STYLE = {"green": "green", "yellow": "yellow", "red": "bold red"}


@dataclass(frozen=True)
class Escalation:
    """An instance of ``oms.sla_violation`` / ``oms.sla_warning`` raised about one of the demo's steps."""

    id: str
    action: str
    instance_id: str
    step: str
    overdue_by_s: float
    status: str
    #: What the governance handler returned.
    handled: dict[str, object] | None


@dataclass(frozen=True)
class Snapshot:
    """The demo's instances and escalations at one moment."""

    now: datetime
    instances: list[InstanceInfo]
    escalations: list[Escalation]

    def light(self, task: TaskInfo) -> str:
        """The light from the task's clock: what the scanner records, or will at its next scan."""
        return light_at(task.finished_at or self.now, task.warn_at, task.expires_at)

    @property
    def settled(self) -> bool:
        """Every instance and escalation finished, and the scanner has caught up with every light."""
        tasks = [t for i in self.instances for t in i.tasks]
        return (all(i.status in FINAL for i in self.instances)
                and all(e.status in FINAL for e in self.escalations)
                and all(t.light == self.light(t) for t in tasks))

    def red_steps(self) -> list[tuple[InstanceInfo, TaskInfo]]:
        return [(i, t) for i in self.instances for t in i.tasks if t.light == "red"]


def _cell(snapshot: Snapshot, task: TaskInfo | None) -> str:
    if task is None:
        return "[dim]·[/]"
    light = snapshot.light(task)
    took = task.total_s if task.finished_at else (snapshot.now - task.ready_at).total_seconds()
    word = "" if light == "green" else f" {light}"  # the light in words too: logs and pipes have no colour
    return f"[{_STYLE[light]}]● {task.status} {took:.1f}s{word}[/]"


def live_table(snapshot: Snapshot) -> Group:
    """Registrations (rows) by step (columns), each cell lit by its SLA clock; escalations below."""
    table = Table(title="EPA hazardous-waste registrations (oms demo)", title_justify="left")
    table.add_column("registration")
    table.add_column("status")
    for step in EPA_DEMO.steps:
        table.add_column(f"{step.id}\nSLA {format_sla(step.sla) if step.sla else '-'}")
    for info in snapshot.instances:
        latest = {t.step_id: t for t in info.tasks}
        row = [f"{info.payload['form_id']}\n[dim]{info.id[:11]}…[/]", info.status]
        table.add_row(*row, *(_cell(snapshot, latest.get(step.id)) for step in EPA_DEMO.steps))
    parts: list[Table] = [table]
    if snapshot.escalations:
        parts.append(escalation_table(snapshot.escalations))
    return Group(*parts)


def escalation_table(escalations: list[Escalation]) -> Table:
    table = Table(title="Escalations raised by the SLA scanner", title_justify="left")
    for column in ("escalation", "late step", "of instance", "overdue by", "status", "handled"):
        table.add_column(column)
    for e in escalations:
        handled = ", ".join(f"{k}={v}" for k, v in (e.handled or {}).items() if k in ("paged", "notified")) or "-"
        style = "bold red" if e.action == "sla_violation" else "yellow"
        table.add_row(f"[{style}]{e.action}[/]", e.step, e.instance_id[:11] + "…", f"{e.overdue_by_s:.1f}s", e.status,
                      handled)
    return table


def summary(console: Console, snapshot: Snapshot, figures: list[StepSummary], events: list[str]) -> None:
    """Print what happened: per step lights and timings, the late instance's log, and what to try next."""
    table = Table(title="SLA summary by step", title_justify="left")
    for column in ("step", "green", "yellow", "red", "queue wait p50", "run p50", "run p95"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for row in figures:
        if row.workflow_id != EPA_DEMO.id:
            continue
        table.add_row(row.step_id, f"[green]{row.green}[/]", f"[yellow]{row.yellow}[/]", f"[bold red]{row.red}[/]",
                      *(f"{v:.2f}s" if v is not None else "-" for v in
                        (row.queue_wait_p50_s, row.run_p50_s, row.run_p95_s)))
    console.print(table)
    red = snapshot.red_steps()
    if red:
        info, task = red[0]
        console.print(f"\nEvent log of the late registration {info.payload['form_id']} ({info.id}):")
        for line in events:
            console.print("  " + line, highlight=False)
    done = sum(i.status == "done" for i in snapshot.instances)
    console.print(f"\n{done}/{len(snapshot.instances)} registrations done; {len(red)} step(s) went red; "
                  f"{len(snapshot.escalations)} escalation(s) raised and handled by the governance handler.")
    for info, task in red:
        assert task.expires_at is not None  # a red step has a deadline
        console.print(f"[bold red]red:[/] {task.step_id} of {info.id} took {task.total_s or 0:.1f}s "
                      f"against its {(task.expires_at - task.ready_at).total_seconds():.0f}s SLA")
    console.print("\nLook closer (same directory): [bold]oms list --light red[/], [bold]oms status <id>[/], "
                  "[bold]oms history <id>[/]")
