"""``oms user create | list | update | token | disable | enable``: the people who work human steps, each with a
personal token."""

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
      oms user update alice --email alice@epa.gov
      oms user token alice            # a lost token: a new one, the old one stops
      oms user disable alice
      oms user enable alice           # with a new token
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
    secret, made = users.create(name, _groups(groups), email=email, role=role)
    _token(f"created user {made.name!r} ({made.role}, groups {','.join(made.groups) or '-'})", secret)


def _groups(text: str) -> list[str]:
    return [g.strip() for g in text.split(",") if g.strip()]


def _token(said: str, secret: str) -> None:
    """Say what was done (on stderr) and print the token (on stdout, alone: `$(oms user token alice)`)."""
    click.echo(f"{said}; her token is shown once, keep it:", err=True)
    click.echo(secret)


@user.command(context_settings=CONTEXT)
@click.argument("name")
@env_option("--groups", env="OMS_USER_GROUPS", metavar="A,B", help="Her groups from now on, comma-separated.")
@env_option("--email", env="OMS_USER_EMAIL", metavar="ADDRESS", help="Her e-mail address ('' for none).")
@env_option("--role", env="OMS_USER_ROLE", type=click.Choice(users.ROLES), help="Her role from now on.")
def update(name: str, groups: str | None, email: str | None, role: str | None) -> None:
    """Change the person NAME's groups, e-mail address or role; what is not given stays. The steps she holds stay
    hers; every API process sees the change at her next request.

    \b
    Examples:
      oms user update alice --email alice@epa.gov
      oms user update dave --groups inspectors,supervisors --role supervisor
    """
    changed = users.update(name, groups=None if groups is None else _groups(groups),
                           email=users.KEEP if email is None else (email or None), role=role)
    click.echo(f"updated user {changed.name!r} ({changed.role}, groups {','.join(changed.groups) or '-'}, "
               f"e-mail {changed.email or '-'})")


@user.command(context_settings=CONTEXT)
@click.argument("name")
def token(name: str) -> None:
    """Print a new personal token for NAME (a lost or leaked one): her old token stops working at once.

    \b
    Examples:
      oms user token alice
    """
    secret, _ = users.new_token(name)
    _token(f"new token for {name!r}; the old one no longer works", secret)


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


@user.command(context_settings=CONTEXT)
@click.argument("name")
def enable(name: str) -> None:
    """Enable the person NAME again, with a new personal token (the one she had before never works again).

    \b
    Examples:
      oms user enable alice
    """
    secret, _ = users.new_token(name, enable=True)
    _token(f"enabled {name!r}", secret)
