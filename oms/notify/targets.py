"""Whom a notice's target names, read when it is sent: ``user:<name>`` and ``group:<name>`` are people's e-mail
addresses (``oms user``); any other name is a channel (``oms channel``).

A target that resolves to nobody (an unknown or disabled person or channel, a person
without an e-mail address, a group with no live member who has one) is not retried:
the notice fails at once, saying why. ``assignee`` is the ladder's to resolve before
the notice is written; one that reaches the outbox fails the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from ..store import channels
from ..store.db import database, retrying
from ..store.tables import users

USER, GROUP = "user:", "group:"


@dataclass(frozen=True)
class Mailbox:
    """E-mail addresses to send a notice to (a person, a group's people, an e-mail channel)."""

    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Nobody:
    """A target that reaches no one, and why."""

    reason: str


#: Where a notice goes: a webhook channel's endpoint, e-mail addresses, or nobody.
Resolved = channels.Endpoint | Mailbox | Nobody


def _person(conn: Connection, name: str) -> Resolved:
    row = conn.execute(select(users.c.email, users.c.disabled_at).where(users.c.name == name)).first()
    if row is None:
        return Nobody(f"no user is named {name!r}")
    if row.disabled_at is not None:
        return Nobody(f"user {name!r} is disabled (oms user enable {name})")
    if not row.email:
        return Nobody(f"user {name!r} has no e-mail address (oms user update {name} --email ADDRESS)")
    return Mailbox((row.email,))


def _group(conn: Connection, group: str) -> Resolved:
    rows = conn.execute(select(users.c.email, users.c.groups).where(users.c.disabled_at.is_(None))
                        .order_by(users.c.name))
    found = tuple(dict.fromkeys(row.email for row in rows if row.email and group in (row.groups or ())))
    return Mailbox(found) if found else Nobody(f"group {group!r} has no live member with an e-mail address")


def _channel(conn: Connection, name: str) -> Resolved:
    found = channels.endpoint(conn, name)
    if found is None:
        return Nobody(f"no channel is named {name!r}" + (" ('assignee' is resolved by the ladder, to user:… or "
                                                         "group:…)" if name == "assignee" else ""))
    if isinstance(found, channels.Channel):
        return Nobody(f"channel {name!r} is disabled (oms channel enable {name})")
    if found.kind == channels.EMAIL and found.email:
        return Mailbox((found.email,))
    return found


def resolve(target: str) -> Resolved:
    """Whom ``target`` reaches now."""

    def read() -> Resolved:
        with database().reader.connect() as conn:
            if target.startswith(USER):
                return _person(conn, target.removeprefix(USER))
            if target.startswith(GROUP):
                return _group(conn, target.removeprefix(GROUP))
            return _channel(conn, target)

    return retrying(read, "resolving a notice's target")
