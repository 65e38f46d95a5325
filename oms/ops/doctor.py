"""``oms doctor``: is this deployment able to run its workflows? Each check says ok, warn or fail, and why.

It checks the database (reachable, schema at this code's revision), the broker,
the upkeep (the newest SLA scan and reconciler pass, notices being sent), the Celery workers that
answer a broadcast, and every topic: messages queued, steps waiting in the
database, who consumes it. A topic whose steps have waited longer than
``OMS_RECONCILE_AFTER`` with no live consumer fails; one with nothing waiting and
no consumer only warns. Pull workers are seen on RabbitMQ (they are the queue's
consumers while they wait) but not on Redis or the filesystem broker, where only
their claims show: a holder that claimed a step of the topic within
:data:`RECENT_CLAIMS` counts as its consumer while no step has waited longer than
``OMS_RECONCILE_AFTER``, and then only one that claimed within that patience.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kombu.utils.url import maybe_sanitize_url
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ..celery.app import current as celery_app
from ..durations import format_duration
from ..exceptions import SchemaBehind
from ..settings import ENGINE_QUEUE, celery_command, get_settings
from ..states import StepKind, TaskStatus
from ..store.catalog import load_definition
from ..store.db import connect, safe_url, transaction
from ..store.outbox import backlog
from ..store.runs import MISSED_SCANS, RECONCILE, SCAN, last_run, missing_scan
from ..store.schema import auto_upgrades, head, verdict
from ..store.tables import DefinitionRow, TaskRow
from .reconcile import queue_state

OK, WARN, FAIL = "ok", "warn", "fail"
#: How recent a claim must be for its holder to count as a topic's consumer (a pull worker no broker shows).
RECENT_CLAIMS = timedelta(minutes=10)
#: The engine's topics of steps no worker runs, and what waits on each.
NO_WORKER = {StepKind.HUMAN.topic: "step(s) queued for people (claimed from their inbox, no worker serves them)",
             StepKind.WAIT.topic: "step(s) waiting for a signal (oms.signal ends them, no worker)",
             StepKind.TIMER.topic: "timer(s) sleeping (the SLA scan ends them, no worker)"}


@dataclass(frozen=True)
class Check:
    """One line of ``oms doctor``."""

    name: str
    status: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ago(moment: datetime, now: datetime) -> str:
    return format_duration(timedelta(seconds=round(max((now - moment).total_seconds(), 0))))


def database_check() -> Check:
    """Is the database reachable, and its schema this code's (or one it upgrades itself to)?"""

    url = get_settings().database_url
    shown = safe_url(url)
    try:
        engine = connect(url)
        try:
            dialect = engine.dialect.name
            with engine.connect() as connection:
                problem = verdict(connection, shown)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        return Check("database", FAIL, f"cannot reach {shown}: {str(getattr(exc, 'orig', exc)).strip()}")
    if problem is None:
        return Check("database", OK, f"{shown}: reachable, schema at revision {head()} (the newest)")
    if isinstance(problem, SchemaBehind) and auto_upgrades(dialect):
        return Check("database", WARN, f"{problem}; it upgrades itself on first use (OMS_AUTO_UPGRADE)")
    return Check("database", FAIL, str(problem))


def broker_check() -> Check:
    """Can the broker be reached?"""
    shown = maybe_sanitize_url(celery_app().conf.broker_url)
    try:
        with celery_app().connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        return Check("broker", FAIL, f"cannot reach {shown}: {exc}")
    return Check("broker", OK, f"{shown}: reachable")


def _upkeep(now: datetime) -> list[Check]:
    settings = get_settings()
    checks = []
    scan = last_run(SCAN)
    warning = missing_scan(now)
    if warning:
        checks.append(Check("SLA scan", FAIL, warning))
    elif scan is not None and scan.errors:
        checks.append(Check("SLA scan", FAIL, f"the last scan ({_ago(scan.finished_at, now)} ago) could not handle "
                            f"{scan.errors} row(s): see the log, and the task.scan_failed events"))
    elif scan is not None:
        took = (scan.finished_at - scan.started_at).total_seconds()
        checks.append(Check("SLA scan", OK, f"last ran {_ago(scan.finished_at, now)} ago on {scan.host}, took "
                            f"{took:.2f}s, moved {scan.rows} row(s)"))
    every = max(settings.reconcile_after / 3, 1.0)  # celeryconfig's schedule
    reconciled = last_run(RECONCILE)
    if reconciled is None:
        checks.append(Check("reconciler", FAIL,
                            f"the reconciler has not run yet: is `{celery_command('beat')}` running?"))
    elif (now - reconciled.finished_at).total_seconds() > MISSED_SCANS * every:
        checks.append(Check("reconciler", FAIL, f"no reconciler pass for {_ago(reconciled.finished_at, now)}: is "
                            f"`{celery_command('beat')}` running (and a worker on the `oms` queue)?"))
    else:
        checks.append(Check("reconciler", OK, f"last ran {_ago(reconciled.finished_at, now)} ago, published "
                            f"{reconciled.rows} lost step(s) again"))
    return checks


def notices_check(now: datetime) -> Check:
    """Are notices being sent? One due for longer than a few sweeps and a lease means no sweep runs."""
    settings = get_settings()
    found = backlog(now - timedelta(days=1), now)
    counts = f"{found.sent} sent and {found.failed} given up in the last 24 h, {found.pending} waiting"
    late = 3 * settings.notice_interval + settings.notice_lease
    if found.oldest_due is not None and (now - found.oldest_due).total_seconds() > late:
        return Check("notices", FAIL, f"{counts}; one has been due for {_ago(found.oldest_due, now)}: is "
                     f"`{celery_command('beat')}` running, and a worker on the `oms` queue?")
    if found.failed:
        return Check("notices", WARN, f"{counts}; the newest given up: {found.last_error} (`oms notices --failed`)")
    return Check("notices", OK, counts)


def _consumers(timeout: float) -> tuple[Check, dict[str, list[str]]]:
    """The Celery workers that answer, and the queues each consumes: ``{queue: [worker, …]}``."""
    try:
        answers = celery_app().control.inspect(timeout=timeout).active_queues() or {}
    except Exception as exc:
        return Check("workers", FAIL, f"cannot ask the workers: {exc}"), {}
    serving: dict[str, list[str]] = {}
    for worker, queues in answers.items():
        for queue in queues or []:
            serving.setdefault(queue["name"], []).append(worker)
    if not answers:
        return Check("workers", WARN, f"no Celery worker answered within {timeout:g}s"), serving
    return Check("workers", OK, f"{len(answers)} Celery worker(s) answered: {', '.join(sorted(answers))}"), serving


def _topics(now: datetime, serving: dict[str, list[str]]) -> list[Check]:

    with transaction() as session:
        waiting = {topic: (count, oldest) for topic, count, oldest in session.execute(
            select(TaskRow.topic, func.count(), func.min(TaskRow.ready_at))
            .where(TaskRow.status == TaskStatus.PENDING.value, TaskRow.ready_at <= now).group_by(TaskRow.topic))}
        topics = set(waiting)
        claimed: dict[str, dict[str, datetime]] = {}
        for topic, holder, at in session.execute(
                select(TaskRow.topic, TaskRow.worker_id, func.max(TaskRow.started_at))
                .where(TaskRow.started_at >= now - RECENT_CLAIMS, TaskRow.worker_id.is_not(None))
                .group_by(TaskRow.topic, TaskRow.worker_id)):
            claimed.setdefault(topic, {})[holder] = at
        for (workflow_id,) in session.execute(select(DefinitionRow.workflow_id).distinct()):
            definition, _ = load_definition(session, workflow_id)
            topics.update(step.topic for step in definition.steps)
    patience = get_settings().reconcile_after
    checks = []
    for topic in sorted(topics | {ENGINE_QUEUE}):
        count, oldest = waiting.get(topic, (0, None))
        if topic in NO_WORKER:  # people, signals and the clock end these steps: no consumer is missing
            detail = f"{count} {NO_WORKER[topic]}" + (f", the oldest for {_ago(oldest, now)}" if oldest else "")
            checks.append(Check(f"topic {topic}", OK, detail))
            continue
        state = queue_state(topic)
        queued = None if state is None else state[0]
        consumers = list(serving.get(topic, []))
        waited = (now - oldest).total_seconds() if oldest else 0.0
        if state is not None and state[1] > len(consumers):  # RabbitMQ counts pull workers waiting on the queue
            consumers.append(f"{state[1] - len(consumers)} other consumer(s) on the broker")
        else:  # a claim counts while nothing waits long; then only one as recent as that patience (not a dead worker)
            consumers += [f"{holder} (claimed a step {_ago(at, now)} ago)"
                          for holder, at in claimed.get(topic, {}).items() if holder not in consumers
                          and (waited <= patience or (now - at).total_seconds() <= patience)]
        detail = (f"{'?' if queued is None else queued} message(s) queued, {count} step(s) waiting"
                  + (f", the oldest for {_ago(oldest, now)}" if oldest else "")
                  + (f"; consumed by {', '.join(sorted(consumers))}" if consumers else "; no live consumer"))
        if consumers:
            status = OK
        elif count and waited > patience:
            status = FAIL
            detail += (" (no Celery worker serves it, and no step of it was claimed in the last "
                       f"{format_duration(timedelta(seconds=patience))}; pull workers show on RabbitMQ, or by their "
                       "claims)")
        else:
            status = WARN
        checks.append(Check(f"topic {topic}", status, detail))
    return checks


def diagnose(timeout: float = 2.0, now: datetime | None = None) -> list[Check]:
    """Every check, in order; those that need the database are skipped when it cannot be used."""
    now = now or datetime.now(UTC)
    checks = [database_check(), broker_check()]
    if checks[0].status == FAIL:
        return [*checks, Check("upkeep", FAIL, "not checked: the database cannot be used")]
    checks += [*_upkeep(now), notices_check(now)]
    if checks[1].status != OK:
        return [*checks, Check("topics", FAIL, "not checked: the broker cannot be reached")]
    workers, serving = _consumers(timeout)
    return [*checks, workers, *_topics(now, serving)]
