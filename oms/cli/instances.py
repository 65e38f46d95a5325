"""``oms start | status | history | list | cancel | retry``: one instance at a time, or a list."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from ..engine.control import cancel_workflow, retry_workflow
from ..engine.starts import start_workflow
from ..reads import get_instance, list_instances
from ..reads import history as events
from ..states import CLEARED, LIGHTS, InstanceStatus, StepKind, TaskStatus
from ..store.lights import seen_light
from ..store.runs import missing_scan
from . import kinds, render
from .base import CONTEXT, die, env_option

if TYPE_CHECKING:
    from ..reads import StepInfo, TaskInfo


def warn_if_no_scan() -> None:
    """Say so above the output when no SLA scan has run lately: lights and lapsed claims are then stale."""
    warning = missing_scan()
    if warning:
        click.echo(click.style(f"warning: {warning}", fg="yellow"), err=True)


def _json_object(text: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        die(f"--payload is not valid JSON: {exc}")
    except RecursionError:
        die("--payload is nested too deeply (see OMS_MAX_PAYLOAD_DEPTH)")
    if not isinstance(data, dict):
        die(f"--payload must be a JSON object ({{...}}), not {type(data).__name__}")
    return data


@click.command(context_settings=CONTEXT)
@click.argument("workflow")
@env_option("--payload", env="OMS_PAYLOAD", default="{}", show_default=True, metavar="JSON",
            help="The instance's payload, a JSON object every step can read.")
@env_option("--key", env="OMS_BUSINESS_KEY", metavar="KEY",
            help="Its business key, the case's own name: one unfinished instance of WORKFLOW may have it.")
def start(workflow: str, payload: str, key: str | None) -> None:
    """Start the latest version of WORKFLOW and print the new instance's id.

    \b
    Examples:
      oms start epa_waste_reg --payload '{"form_id": "F8700-12-42"}'
      oms start epa_waste_reg --payload '{"form_id": "F8700-12-42"}' --key F8700-12-42
      id=$(oms start epa_waste_reg --payload '{"form_id": "F1"}') && oms status "$id"
    """
    click.echo(start_workflow(workflow, payload=_json_object(payload), business_key=key))


@click.command(context_settings=CONTEXT)
@click.argument("instance_id")
@env_option("--json", "as_json", env="OMS_JSON", is_flag=True, help="Print the instance as JSON.")
@env_option("--items", env="OMS_ITEMS", is_flag=True, help="List every item of a mapped step, not only its counts.")
def status(instance_id: str, as_json: bool, items: bool) -> None:
    """Show an instance: status, light, and its steps with what they wait for and every attempt's timings.

    A mapped step is one line with its items' counts (done, running, pending, failed,
    cancelled) and worst light; --items lists each item. The light of an open step is read from
    its clock too, so it does not wait for the next SLA scan.

    \b
    Examples:
      oms status wf-9b2f...
      oms status wf-9b2f... --items
      oms status wf-9b2f... --json | jq .results
    """

    info = get_instance(instance_id)
    if info.finished_at is None:  # a finished instance's lights no longer move
        warn_if_no_scan()
    if as_json:
        render.as_json(info)
        return
    now = datetime.now(UTC)
    worst = max([seen_light(info.light, info.warn_at, info.expires_at, info.finished_at, now),
                 *(task.light_now(now) for task in info.tasks)], key=LIGHTS.index)
    took = render.seconds(((info.finished_at or now) - info.created_at).total_seconds())
    click.echo(f"instance  {info.id}")
    click.echo(f"workflow  {info.workflow_id} v{info.version}, at step {info.current_step}")
    if info.business_key is not None:
        click.echo(f"key       {info.business_key}")
    click.echo("status    " + click.style(info.status, fg=render.COLOURS.get(info.status)) + f"  ({took})  light "
               + click.style(worst, fg=render.COLOURS.get(worst))
               + (f"  {kinds.escalated(info.escalated, info.escalations)}" if info.escalations else ""))
    click.echo(f"started   {render.moment(info.created_at)}   finished {render.moment(info.finished_at)}")
    if info.error:
        click.echo(f"error     {info.error}")
    click.echo()
    rows: list[list[render.Cell]] = []
    for step in info.steps:
        after = ", ".join(step.after) or "-"
        attempts = [t for t in info.tasks if t.step_index == step.index]
        if step.map is not None:
            counts = step.items or {}
            noun = "item" if step.item_count == 1 else "items"
            note = (f"{step.item_count} {noun}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
                    if step.item_count else f"map {step.map}")
            rows.append([step.id, "-", render.status(step.status), render.light(step.light), step.kind,
                         step.sla or "-", "-", "-", "-", "-", after, note])
            if not items:
                continue
        elif not attempts:
            rows.append([step.id, "-", render.status(step.status), "-", step.kind, "-", "-", "-", "-", "-", after,
                         kinds.step_note(step, None, now)])
            continue
        for task in attempts:
            label = step.id if task.item_index is None else f"  {step.id}[{task.item_index}]"
            rows.append([label, str(task.attempt), render.status(task.status), _light(task, now), step.kind,
                         step.sla or "-", render.seconds(task.queue_wait_s), render.seconds(task.run_s),
                         render.seconds(task.total_s), task.worker_id or "-", after if task.item_index is None else "",
                         _note(step, task, now)])
    render.table(["step", "attempt", "status", "light", "kind", "sla", "queue wait", "run", "total", "worker",
                  "after", "note"], rows)


def _light(task: TaskInfo, now: datetime) -> render.Cell:
    """The light, with why when it is not the plain clock's: ``(paused)``, ``(predicted)``."""
    why = "paused" if task.paused_at and not task.finished_at else task.light_reason
    return render.light(task.light_now(now), "" if why in (None, CLEARED) else f" ({why})")


def _note(step: StepInfo, task: TaskInfo, now: datetime) -> str:
    """What the attempt's kind says (whom it is queued for, its signal, its timer's end), then its clock: a timer's
    clock is its sleep, said already."""
    said = kinds.step_note(step, task, now)
    if step.escalations:
        said = "; ".join(filter(None, [kinds.escalated(task.rung, step.escalations), said]))
    if step.kind == StepKind.TIMER:
        return "; ".join(filter(None, [said, task.error]))
    if task.finished_at is not None and not task.paused_s and not task.paused_at:
        return "; ".join(filter(None, [said, task.error]))
    clock = task.clock(now)
    parts = [f"used {render.seconds(clock.used_s)}"]
    if clock.paused_s or clock.paused:
        parts.append(f"paused {render.seconds(clock.paused_s)}" + (f" ({task.pause_reason})" if clock.paused else ""))
    if task.finished_at is None:
        left = clock.left_s
        parts.append("no SLA of its own" if left is None else f"left {render.seconds(left)}" if left >= 0
                     else f"overdue by {render.seconds(-left)}")
    if clock.calendar:
        parts.append(f"working time, {clock.calendar}")
    return "; ".join(filter(None, [said, ", ".join(parts), task.error]))


@click.command(context_settings=CONTEXT)
@click.argument("instance_id")
@env_option("--json", "as_json", env="OMS_JSON", is_flag=True, help="Print the events as JSON.")
def history(instance_id: str, as_json: bool) -> None:
    """Print an instance's event log, oldest first.

    \b
    Examples:
      oms history wf-9b2f...
      oms history wf-9b2f... | grep sla_
    """
    log = events(instance_id)
    if as_json:
        render.as_json(log)
        return
    rows = []
    for event in log:
        rows.append([render.moment(event.at, precise=True), event.kind, event.step_id or "",
                     str(event.attempt or ""), kinds.event_details(event.kind, event.data)])
    render.table(["at", "event", "step", "attempt", "details"], rows)


@click.command("list", context_settings=CONTEXT)
@env_option("--workflow", env="OMS_WORKFLOW", help="Only instances of this workflow.")
@env_option("--status", env="OMS_STATUS", type=click.Choice([s.value for s in InstanceStatus]),
            help="Only instances with this status.")
@env_option("--light", env="OMS_LIGHT", type=click.Choice([light.value for light in LIGHTS]),
            help="Only instances whose worst light (their own or a step's) is this one.")
@env_option("--key", env="OMS_BUSINESS_KEY", metavar="KEY", help="Only instances with this business key.")
@env_option("--limit", env="OMS_LIMIT", type=click.IntRange(min=1), default=50, show_default=True,
            help="At most this many, newest first.")
@env_option("--escalations/--no-escalations", env="OMS_ESCALATIONS", default=True, show_default=True,
            help="List the escalations' own instances (oms.sla_violation, oms.sla_warning) too.")
@env_option("--json", "as_json", env="OMS_JSON", is_flag=True, help="Print the instances as JSON.")
def list_(workflow: str | None, status: str | None, light: str | None, key: str | None, limit: int,
          escalations: bool, as_json: bool) -> None:
    """List instances, newest first, with the worst light each has seen (and its business key, if it has one).

    \b
    Examples:
      oms list
      oms list --workflow epa_waste_reg --status running
      oms list --light red             # every instance with a late step
      oms list --key F8700-12-42       # the case a citizen quotes
      oms list --no-escalations        # without the escalations' own instances
    """
    found = list_instances(workflow, status, light, limit, business_key=key, escalations=escalations)
    warn_if_no_scan()
    if as_json:
        render.as_json(found)
        return
    if not found:
        click.echo("(no instances)", err=True)
        return
    now = datetime.now(UTC)
    keyed = any(i.business_key for i in found)  # a column for business keys only when there are some
    rows = [
        [i.id, f"{i.workflow_id} v{i.version}", *([i.business_key or "-"] if keyed else []), render.status(i.status),
         render.light(i.light), i.current_step or "-", render.moment(i.created_at),
         render.seconds(((i.finished_at or now) - i.created_at).total_seconds()), (i.error or "")[:60]]
        for i in found
    ]
    render.table(["instance", "workflow", *(["key"] if keyed else []), "status", "light", "step", "started", "took",
                  "error"], rows)


@click.command(context_settings=CONTEXT)
@click.argument("instance_id")
@env_option("--reason", env="OMS_CANCEL_REASON", default="cancelled by operator", show_default=True,
            help="Why, recorded in the event log.")
def cancel(instance_id: str, reason: str) -> None:
    """Cancel a running instance: its open steps fail and late reports from workers are refused.

    \b
    Examples:
      oms cancel wf-9b2f...
      oms cancel wf-9b2f... --reason "duplicate registration"
    """
    cancel_workflow(instance_id, reason)
    click.echo(f"cancelled {instance_id}")


@click.command(context_settings=CONTEXT)
@click.argument("instance_id")
def retry(instance_id: str) -> None:
    """Resume a failed instance from its failed step, with a fresh retry budget.

    \b
    Examples:
      oms retry wf-9b2f...
      oms list --status failed --json | jq -r '.[].id' | xargs -n1 oms retry
    """

    retry_workflow(instance_id)
    offered: dict[str, list[int]] = {}  # step id -> attempts offered again (one per item of a mapped step)
    for task in get_instance(instance_id).tasks:
        if task.status == TaskStatus.PENDING:
            offered.setdefault(task.step_id, []).append(task.attempt)
    steps = ", ".join(f"{step} (attempt {max(attempts)})" if len(attempts) == 1 else f"{step} ({len(attempts)} items)"
                      for step, attempts in offered.items())
    click.echo(f"resumed {instance_id}: {steps or 'nothing left to offer'}")
