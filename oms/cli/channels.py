"""``oms channel create | list | disable | enable`` (where notices go) and ``oms notices`` (what was sent, what
failed)."""

from __future__ import annotations

from datetime import datetime, timedelta

import click

from ..durations import utcnow
from ..store import channels, outbox
from . import render
from .base import CONTEXT, OmsGroup, env_option, moment_or_age


@click.group(cls=OmsGroup, context_settings=CONTEXT)
def channel() -> None:
    """Where escalation ladders send notices: webhooks (Slack's and Teams' incoming webhooks are webhooks) and
    e-mail addresses, each defined once by name.

    \b
    A ladder's rung names its targets: a channel's name, user:<name> or group:<name>
    (people's e-mail addresses, from `oms user`), or assignee. A webhook's secret
    signs its bodies (X-OMS-Signature: sha256=<hex>) and is never shown again.

    \b
    Examples:
      oms channel create oncall-pager --webhook https://pager.agency.gov/hooks/oms --secret "$PAGER_SECRET"
      oms channel create director-mail --email director@agency.gov
      oms channel list
      oms channel disable oncall-pager
      oms channel enable oncall-pager
    """


@channel.command(context_settings=CONTEXT)
@click.argument("name")
@env_option("--webhook", env="OMS_CHANNEL_WEBHOOK", metavar="URL", help="POST each notice as JSON to this URL.")
@env_option("--secret", env="OMS_CHANNEL_SECRET", metavar="SECRET",
            help="Sign a webhook's bodies with HMAC-SHA256 of this secret (better from the variable than typed).")
@env_option("--email", env="OMS_CHANNEL_EMAIL", metavar="ADDRESS",
            help="Send each notice by e-mail to this address (through OMS_SMTP_URL).")
def create(name: str, webhook: str | None, secret: str | None, email: str | None) -> None:
    """Define the channel NAME: a webhook (--webhook, with --secret to sign) or an e-mail address (--email).

    \b
    Examples:
      OMS_CHANNEL_SECRET=… oms channel create oncall-pager --webhook https://pager.agency.gov/hooks/oms
      oms channel create team-slack --webhook https://hooks.slack.com/services/T000/B000/XXXX
      oms channel create director-mail --email director@agency.gov
    """
    made = channels.create(name, webhook=webhook, email=email, secret=secret)
    signed = ", signed" if made.signed else ""
    click.echo(f"created channel {made.name!r} ({made.kind} {made.address}{signed})")


@channel.command("list", context_settings=CONTEXT)
@env_option("--json", "as_json", env="OMS_JSON", is_flag=True, help="Print the channels as JSON.")
def list_(as_json: bool) -> None:
    """Every channel: its kind, where it goes (a webhook's host only), whether it signs, its state. Never a secret
    nor a webhook's path (Slack's and Teams' URLs hold theirs in it).

    \b
    Examples:
      oms channel list
    """
    found = channels.list_channels()
    if as_json:
        render.as_json(found)
        return
    if not found:
        click.echo("(no channels: oms channel create NAME --webhook URL | --email ADDRESS)", err=True)
        return
    render.table(["name", "kind", "address", "signed", "created", "disabled"],
                 [[c.name, c.kind, c.address, "yes" if c.signed else "-", render.moment(c.created_at),
                   render.moment(c.disabled_at)] for c in found])


@channel.command(context_settings=CONTEXT)
@click.argument("name")
def disable(name: str) -> None:
    """Stop sending to the channel NAME: notices still due to it fail, saying the channel is disabled.

    \b
    Examples:
      oms channel disable oncall-pager
    """
    channels.disable(name)
    click.echo(f"disabled channel {name}")


@channel.command(context_settings=CONTEXT)
@click.argument("name")
def enable(name: str) -> None:
    """Send to the channel NAME again; ladders may name it again. Notices given up while it was disabled stay so.

    \b
    Examples:
      oms channel enable oncall-pager
    """
    channels.enable(name)
    click.echo(f"enabled channel {name}")


@click.command(context_settings=CONTEXT)
@env_option("--failed", env="OMS_NOTICES_FAILED", is_flag=True, help="Only the notices given up, with their error.")
@env_option("--since", env="OMS_NOTICES_SINCE", metavar="AGE|DATE", default="24h", show_default=True,
            help="Notices written in the last AGE (1h, 7d) or since DATE (2026-12-01).")
@env_option("--limit", env="OMS_NOTICES_LIMIT", type=click.IntRange(1, 10_000), default=100, show_default=True,
            help="At most this many, newest first.")
@env_option("--json", "as_json", env="OMS_JSON", is_flag=True, help="Print the notices as JSON.")
def notices(failed: bool, since: str, limit: int, as_json: bool) -> None:
    """The notices escalations sent: when, to whom, about what, and what failed (with the last error).

    \b
    Status: sent (at the time shown), pending (its next attempt is due at the time
    shown: a receiver or the SMTP server did not take it yet), failed (given up: its
    target reaches nobody, or a day of retries passed).

    \b
    Examples:
      oms notices
      oms notices --failed --since 7d
      oms notices --json | jq '.[] | select(.status == "pending")'
    """
    moment = moment_or_age(since, "--since")
    after = utcnow() - moment if isinstance(moment, timedelta) else moment
    found = outbox.list_notices(status=outbox.FAILED if failed else None, since=after, limit=limit)
    if as_json:
        render.as_json(found)
        return
    if not found:
        click.echo(f"(no {'failed ' if failed else ''}notices since {render.moment(after)})", err=True)
        return
    render.table(["written", "target", "about", "light", "status", "attempts", "when", "last error"],
                 [[render.moment(n.created_at), n.target, _about(n), render.light(n.light) if n.light else "-",
                   render.status(n.status), str(n.attempts), render.moment(_when(n)), n.last_error or "-"]
                  for n in found])


def _about(notice: outbox.NoticeView) -> str:
    return " ".join(part for part in (notice.workflow_id, notice.step_id, notice.instance_id) if part)


def _when(notice: outbox.NoticeView) -> datetime | None:
    """When it was sent, or is due next (pending); ``None`` once failed."""
    return notice.sent_at if notice.status == outbox.SENT else notice.next_attempt_at
