"""``oms demo``: the specification's EPA hazardous-waste registration, end to end, on one machine.

Runs real processes on whatever is configured (by default the embedded SQLite
database and filesystem broker in the working directory): a Celery worker for the
push steps, then a few instances, shown live until they finish.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from act import Task, subscribe

from .definitions import Workflow
from .engine import start_workflow
from .queries import InstanceInfo, get_instance, history
from .settings import get_settings

EPA = Workflow(
    id="epa_waste_reg",
    description="EPA hazardous-waste registration (Form 8700-12)",
    steps=[
        {"id": "collect_form", "sla": "5m"},
        {"id": "validate_tax_id", "sla": "2m"},
        {"id": "charge_fee", "sla": "1m"},
        {"id": "assign_inspector", "sla": "48h"},
    ],
)
TOPICS = [step.topic for step in EPA.steps]


@subscribe("collect_form")
def collect_form(task: Task) -> dict[str, Any]:
    time.sleep(0.2)
    return {"form": task.payload["form_id"], "pages": 4}


@subscribe("validate_tax_id")
def validate_tax_id(task: Task) -> dict[str, Any]:
    time.sleep(0.3)
    return {"irs_match": True}


@subscribe("charge_fee")
def charge_fee(task: Task) -> dict[str, Any]:
    time.sleep(0.2)
    return {"charged_usd": 100}


@subscribe("assign_inspector")
def assign_inspector(task: Task) -> dict[str, Any]:
    time.sleep(0.2)
    return {"inspector": f"insp-{sum(map(ord, task.instance_id)) % 97:02d}"}


_COLORS = {"done": "green", "running": "yellow", "pending": "white", "failed": "red", "cancelled": "magenta"}


def _table(instances: list[InstanceInfo]) -> Table:
    table = Table(title="EPA hazardous-waste registrations")
    table.add_column("instance")
    table.add_column("status")
    for step in EPA.steps:
        table.add_column(f"{step.id} (SLA {step.model_dump(mode='json')['sla']})")
    for info in instances:
        cells = []
        for step in EPA.steps:
            attempts = [t for t in info.tasks if t.step_id == step.id]
            status = attempts[-1].status if attempts else "-"
            cells.append(f"[{_COLORS.get(status, 'white')}]{status}[/]")
        table.add_row(info.id[:15], f"[{_COLORS[info.status]}]{info.status}[/]", *cells)
    return table


def run(instances: int = 3, timeout: float = 60.0, console: Console | None = None) -> bool:
    """Run the demo; return True when every instance finished ``done``."""
    console = console or Console()
    version = EPA.save()
    console.print(f"Saved workflow [bold]{EPA.id}[/] version {version}; starting a Celery worker for {TOPICS}")
    log = get_settings().home / "demo-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"(worker log: {log})")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "oms", "worker", "-Q", ",".join(TOPICS), "-I", "oms.demo",
         "-c", "2", "-l", "info", "--without-mingle", "--without-gossip"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        ids = [start_workflow(EPA.id, payload={"form_id": f"F8700-12-{n:02d}"}) for n in range(instances)]
        deadline = time.monotonic() + timeout
        with Live(console=console, refresh_per_second=8) as live:
            while True:
                infos = [get_instance(i) for i in ids]
                live.update(_table(infos))
                if all(i.status in ("done", "failed", "cancelled") for i in infos) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
    finally:
        worker.terminate()  # warm shutdown: the worker stops its own pool
        worker.wait(30)
    first = ids[0]
    console.print(f"\nEvent log of {first}:")
    for event in history(first):
        console.print(f"  {event.at:%H:%M:%S.%f}"[:-3] + f"  {event.kind:<18} {event.step_id or ''}")
    done = sum(i.status == "done" for i in infos)
    console.print(f"\n{done}/{len(ids)} instances done; results of {first}: {get_instance(first).results}")
    return done == len(ids)

