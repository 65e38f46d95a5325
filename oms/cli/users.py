"""``oms user create | list | disable``: the people who work human steps, each with a personal token."""

from __future__ import annotations

import click

from ..engine.people import disable_user
from ..store import users
from . import render
from .base import CONTEXT, OmsGroup, env_option


@click.group(cls=OmsGroup, context_settings=CONTEXT)
def user() -> None:
    """People who claim and complete human steps (in their inbox, over the HTTP API).

    \b
    Each has groups (a step's `assign: {groups: [inspectors]}` offers it to them), a
    role (person; or supervisor, who may also reassign her groups' steps) and a
    personal token for the HTTP API, shown once and kept as its hash.

    \b
    Examples:
      oms user create alice --groups inspectors --email alice@agency.gov
      oms user list
      oms user disable alice
    """


@user.command(context_settings=CONTEXT)
@click.argument("name")
@env_option("--groups", env="OMS_USER_GROUPS", required=True, metavar="A,B",
            help="Her groups, comma-separated (a step assigned to one of them is offered to her).")
@env_option("--email", env="OMS_USER_EMAIL", metavar="ADDRESS", help="Her e-mail address.")
@env_option("--role", env="OMS_USER_ROLE", type=click.Choice(users.ROLES), default="person", show_default=True,
            help="person; or supervisor, who may also reassign her groups' steps.")
def create(name: str, groups: str, email: str | None, role: str) -> None:
    """Add the person NAME and print her personal token (the only time it is shown; only its hash is kept).

    \b
    Examples:
      oms user create alice --groups inspectors --email alice@agency.gov
      oms user create dave --groups inspectors,supervisors --role supervisor
    """
    secret, made = users.create(name, [g.strip() for g in groups.split(",") if g.strip()], email=email, role=role)
    click.echo(f"created user {made.name!r} ({made.role}, groups {','.join(made.groups) or '-'}); her token is "
               "shown once, keep it:", err=True)
    click.echo(secret)


@user.command("list", context_settings=CONTEXT)
@env_option("--json", "as_json", env="OMS_JSON", is_flag=True, help="Print the people as JSON.")
def list_(as_json: bool) -> None:
    """Everyone's name, groups, e-mail, role, and when she was created or disabled (never a token).

    \b
    Examples:
      oms user list
      oms user list --json | jq -r '.[] | select(.disabled_at == null) | .name'
    """
    found = users.list_users()
    if as_json:
        render.as_json(found)
        return
    if not found:
        click.echo("(no users: oms user create NAME --groups ...)", err=True)
        return
    render.table(["name", "groups", "email", "role", "created", "disabled"],
                 [[u.name, ",".join(u.groups) or "-", u.email or "-", u.role, render.moment(u.created_at),
                   render.moment(u.disabled_at)] for u in found])


@user.command(context_settings=CONTEXT)
@click.argument("name")
def disable(name: str) -> None:
    """Disable the person NAME: the steps she holds go back to their queues, and her token stops working at her
    next request, in every API process.

    \b
    Examples:
      oms user disable alice
    """
    released = disable_user(name)
    click.echo(f"disabled {name}: {len(released)} claimed step(s) went back to their queues")
