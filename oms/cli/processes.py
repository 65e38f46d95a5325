"""``oms worker | beat | demo``: long-running processes, as thin wrappers of Celery's commands.

``oms worker`` and ``oms beat`` print the ``celery`` command they run, then become
it (``exec``), so signals and exit codes are Celery's own.
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys
from typing import NoReturn

import click

from ..attach import APP_VARIABLE
from ..celery.app import current
from ..celery.compiler import task_name
from ..settings import ENGINE_QUEUE, get_settings
from .base import CONTEXT, RET_ERROR, RET_OK, die, env_option


def _exec_celery(*args: str) -> NoReturn:
    command = [sys.executable, "-m", "celery", "-A", os.environ.get(APP_VARIABLE) or "oms", *args]
    click.echo("oms: " + shlex.join(["celery", *command[3:]]), err=True)
    sys.stderr.flush()
    os.execvp(command[0], command)


def subscribed_topics(modules: list[str]) -> list[str]:
    """Import the handler modules and return the topics they ``@subscribe`` to, in order."""

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as celery -I does: modules are found from the working directory
    app = current()
    before = set(app.tasks.keys())
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            die(f"cannot import {module}: {type(exc).__name__}: {exc}")
    prefix = task_name("")
    return [name.removeprefix(prefix) for name in app.tasks if name not in before and name.startswith(prefix)]


@click.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@env_option("-Q", "--queues", env="OMS_WORKER_QUEUES", metavar="TOPICS",
            help="Topics (queues) to serve, comma-separated. Default: the topics the -I modules subscribe to.")
@env_option("-I", "--include", env="OMS_WORKER_INCLUDE", metavar="MODULES",
            help="Modules with @subscribe handlers, comma-separated.")
@env_option("-B", "--beat", env="OMS_WORKER_BEAT", is_flag=True,
            help="Also run beat in this worker and serve the 'oms' queue: the SLA scanner in one process.")
@env_option("-c", "--concurrency", env="OMS_WORKER_CONCURRENCY", type=click.IntRange(min=1),
            help="Handlers run at once. Default: one per CPU.")
@env_option("-P", "--pool", env="OMS_WORKER_POOL", type=click.Choice(["prefork", "threads", "solo"]),
            default="prefork", show_default=True,
            help="How handlers run; only prefork interrupts a handler at its SLA.")
@env_option("-E", "--events", env="OMS_WORKER_EVENTS", is_flag=True, help="Send task events, for Flower.")
@env_option("-l", "--loglevel", env="OMS_LOGLEVEL", default="info", show_default=True, help="Log level.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(queues: str | None, include: str | None, beat: bool, concurrency: int | None, pool: str, events: bool,
           loglevel: str, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker for your handlers: celery -A oms worker, without its flags to learn.

    Any further arguments go to celery worker unchanged.

    \b
    Examples:
      oms worker -I my_handlers                        # serves the topics my_handlers subscribes to
      oms worker -Q charge_fee -I examples.workers.payment_bot
      oms worker -B -I examples.workers.governance     # plus the SLA scanner and its escalations
      oms worker -I my_handlers -E -- --autoscale=8,2  # events for Flower; a Celery option
    """
    modules = [m for m in (include or "").split(",") if m]
    topics = [q for q in (queues or "").split(",") if q] or subscribed_topics(modules)
    if beat and ENGINE_QUEUE not in topics:
        topics.append(ENGINE_QUEUE)
    if not topics:
        die("nothing to serve: give -I modules with @subscribe handlers, -Q queues, or -B for the SLA scanner")
    args = ["worker", "-Q", ",".join(topics), "-P", pool, "-l", loglevel]
    if modules:
        args += ["-I", ",".join(modules)]
    if concurrency:
        args += ["-c", str(concurrency)]
    if beat:
        args += ["-B", "-s", str(_schedule_file())]
    if events:
        args.append("-E")
    _exec_celery(*args, *celery_args)


def _schedule_file() -> str:
    home = get_settings().home
    home.mkdir(parents=True, exist_ok=True)
    return str(home / "celerybeat-schedule")


@click.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@env_option("--interval", env="OMS_SLA_SCAN_INTERVAL", type=click.FloatRange(min=0, min_open=True),
            help="Seconds between SLA scans; default 10.")
@env_option("-s", "--schedule", env="OMS_BEAT_SCHEDULE",
            help="Beat's state file. Default: OMS_HOME/celerybeat-schedule.")
@env_option("-l", "--loglevel", env="OMS_LOGLEVEL", default="info", show_default=True, help="Log level.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(interval: float | None, schedule: str | None, loglevel: str, celery_args: tuple[str, ...]) -> None:
    """Run Celery beat: it sends the SLA scan (and the reconciler) to the 'oms' queue.

    A worker must serve that queue (oms worker -Q oms). Any number of beats may run:
    each late step is still escalated once.

    \b
    Examples:
      oms beat
      oms beat --interval 2 & oms worker -Q oms,sla_violation -I my_governance
    """
    if interval is not None:
        os.environ["OMS_SLA_SCAN_INTERVAL"] = str(interval)  # read by celeryconfig in the celery process
    _exec_celery("beat", "-s", schedule or _schedule_file(), "-l", loglevel, *celery_args)


@click.command(context_settings=CONTEXT)
@env_option("--instances", env="OMS_DEMO_INSTANCES", type=click.IntRange(min=2, max=20), default=4,
            show_default=True, help="Registrations to start; the last one is deliberately late.")
@env_option("--timeout", env="OMS_DEMO_TIMEOUT", type=click.FloatRange(min=5), default=50, show_default=True,
            help="Seconds to wait for every registration and escalation to finish.")
@env_option("--force", env="OMS_DEMO_FORCE", is_flag=True,
            help="Run on a server database or broker too (its workers would take real steps and escalations).")
def demo(instances: int, timeout: float, force: bool) -> None:
    """Run the EPA registration lab end to end, with a live table of lights.

    Starts a Celery worker (with beat, scanning SLAs every second), the seed's tax
    validator as a pull worker, then the registrations of its own workflow
    (epa_waste_reg_demo), one of them late enough to turn red and be escalated.
    Runs on the embedded default (oms.db and .oms/ in the working directory, no
    servers); against a server database or broker it refuses unless --force: its
    worker would serve the EPA topics and the escalations of that deployment.

    \b
    Examples:
      oms demo
      oms demo --instances 6
    """
    from ..demo import run  # noqa: PLC0415 - the demo's live table costs 30 ms: `oms demo` only

    settings = get_settings()
    embedded = settings.database_url.startswith("sqlite") and settings.broker_url.startswith("filesystem://")
    if not embedded and not force:
        die("oms demo runs on the embedded default (SQLite, filesystem broker) in an empty directory; this one is "
            "configured for a server database or broker, whose real steps and escalations the demo's worker would "
            "take: unset OMS_DATABASE_URL and OMS_BROKER_URL, or pass --force")

    sys.exit(RET_OK if run(instances, timeout) else RET_ERROR)
