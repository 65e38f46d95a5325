"""The ``oms`` command: run the demo, start workflows, read their state, run workers."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

from .exceptions import OmsError

#: Exit codes.
RET_OK, RET_ERROR, RET_USAGE = 0, 1, 2


def _die(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(RET_ERROR)


class _Group(click.Group):
    """Turn engine errors into one line and a non-zero exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OmsError as exc:
            _die(str(exc))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """HMS-OMS: workflows with per-step SLAs on Celery.

    Settings come from OMS_DATABASE_URL and OMS_BROKER_URL (default: SQLite and a
    filesystem broker in the working directory).
    """


@main.command()
@click.option("--instances", default=3, show_default=True, help="How many registrations to start.")
def demo(instances: int) -> None:
    """Run the EPA waste-registration workflow end to end, with a live table.

    Example: oms demo
    """
    from .demo import run

    sys.exit(RET_OK if run(instances) else RET_ERROR)


@main.command()
@click.argument("workflow")
@click.option("--payload", default="{}", show_default=True, help="The payload, a JSON object.")
def start(workflow: str, payload: str) -> None:
    """Start WORKFLOW and print the instance id.

    Example: oms start epa_waste_reg --payload '{"form_id": "F8700-12-42"}'
    """
    from .engine import start_workflow

    try:
        data = json.loads(payload)
    except ValueError as exc:
        _die(f"--payload is not valid JSON: {exc}")
    click.echo(start_workflow(workflow, payload=data))


@main.command()
@click.argument("instance_id")
def status(instance_id: str) -> None:
    """Show an instance and its steps.  Example: oms status wf-9b2f..."""
    from .queries import get_instance

    info = get_instance(instance_id)
    click.echo(f"{info.id}  {info.workflow_id} v{info.version}  {info.status}  at {info.current_step}")
    for task in info.tasks:
        click.echo(f"  {task.step_id:<20} attempt {task.attempt}  {task.status:<8} {task.error or ''}")


@main.command()
@click.argument("instance_id")
def history(instance_id: str) -> None:
    """Print an instance's event log.  Example: oms history wf-9b2f..."""
    from .queries import history as events

    for event in events(instance_id):
        click.echo(f"{event.at.isoformat()}  {event.kind:<18} {event.step_id or '':<20} {event.attempt or ''}")


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("-Q", "--queues", required=True, help="Topics to serve, comma-separated.")
@click.option("-I", "--include", required=True, help="Modules with @subscribe handlers, comma-separated.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(queues: str, include: str, celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker for TOPICS (a thin wrapper of ``celery -A oms worker``).

    Example: oms worker -Q collect_form,charge_fee -I my_handlers
    """
    os.execvp(sys.executable, [sys.executable, "-m", "celery", "-A", "oms", "worker", "-Q", queues,
                               "-I", include, *celery_args])
