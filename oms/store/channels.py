"""Channels: where notices go, defined once (``oms channel create``), a webhook or an e-mail address.

A webhook's secret signs the bodies sent to it and is never shown again: not by
``oms channel list``, not by the API, not in a ``repr``, a log line or an error.
Its URL is shown as its origin only (``https://hooks.slack.com/…``): Slack's and
Teams' incoming-webhook URLs are themselves secrets, in their path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Row, select
from sqlalchemy.exc import IntegrityError

from ..durations import utcnow
from ..exceptions import InvalidArgument, OmsError
from ..model.names import user_name
from .db import database, retrying
from .tables import channels

#: The kinds of channel.
WEBHOOK, EMAIL = "webhook", "email"
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
#: Names a ladder's rung gives a meaning of their own (``user:…`` and ``group:…`` cannot be names).
RESERVED = ("assignee",)
#: Longest webhook URL and secret accepted.
MAX_URL, MAX_SECRET = 2048, 4096


class UnknownChannel(OmsError, LookupError):
    """No channel has this name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no channel is named {name!r} (see `oms channel list`)")


class ChannelExists(OmsError):
    """A channel has this name already."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a channel named {name!r} exists already (`oms channel list`); pick another name")


@dataclass(frozen=True)
class Channel:
    """A channel as it is shown: its webhook's origin, never its path nor its secret."""

    name: str
    kind: str
    #: A webhook's scheme and host (``https://hooks.slack.com/…``), or the e-mail address.
    address: str
    #: Whether a webhook's bodies are signed (it has a secret).
    signed: bool
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class Endpoint:
    """What a sender needs to reach a live channel; the URL and secret stay out of its ``repr``."""

    name: str
    kind: str
    url: str | None = field(repr=False)
    email: str | None
    secret: str | None = field(repr=False)


def shown_url(url: str) -> str:
    """A webhook URL as it may be shown: scheme and host (and port), the rest (path, query, user) hidden."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    where = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    hidden = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{where}{port}{hidden}"


def check_url(url: str) -> str:
    """A webhook URL the sender can POST to: ``http(s)://host…``, printable, at most :data:`MAX_URL`."""
    if len(url) > MAX_URL or not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidArgument(f"a webhook URL is printable text without spaces, at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise InvalidArgument("the webhook URL cannot be parsed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # the URL itself is not repeated: its path may be the secret
        raise InvalidArgument("a webhook URL starts with https:// (or http://) and names a host")
    return url


def check_email(address: str) -> str:
    if len(address) > 320 or not _EMAIL.fullmatch(address):
        raise InvalidArgument(f"e-mail address {address!r:.80} does not look like name@domain.tld")
    return address


def _channel(row: Row[Any]) -> Channel:
    address = shown_url(row.url) if row.kind == WEBHOOK else row.email
    return Channel(row.name, row.kind, address, bool(row.secret), row.created_at, row.disabled_at)


def create(name: str, *, webhook: str | None = None, email: str | None = None, secret: str | None = None) -> Channel:
    """Define a channel: a ``webhook`` URL (its bodies signed with ``secret`` when given) or an ``email`` address."""
    name = user_name(name, "channel name")
    if name.lower() in RESERVED:
        raise InvalidArgument(f"{name!r} is a target of its own in a ladder (the step's assignee): name the "
                              "channel otherwise")
    if (webhook is None) == (email is None):
        raise InvalidArgument("a channel is either a webhook (--webhook URL) or an e-mail address (--email ADDRESS)")
    if secret is not None and (webhook is None or not secret or len(secret) > MAX_SECRET
                               or not secret.isprintable()):
        raise InvalidArgument(f"a secret signs a webhook's bodies: printable text of 1 to {MAX_SECRET} characters, "
                              "for a webhook channel only")
    row = {"name": name, "kind": WEBHOOK if webhook is not None else EMAIL,
           "url": check_url(webhook) if webhook is not None else None,
           "email": check_email(email) if email is not None else None,
           "secret": secret, "created_at": utcnow(), "disabled_at": None}

    def insert() -> None:
        with database().engine.begin() as conn:
            conn.execute(channels.insert().values(**row))

    try:
        retrying(insert, "adding a channel")
    except IntegrityError:
        raise ChannelExists(name) from None
    return get(name)


def _read(query: Any, what: str) -> list[Row[Any]]:
    def read() -> list[Row[Any]]:
        with database().reader.connect() as conn:
            return list(conn.execute(query))

    return retrying(read, what)


def get(name: str) -> Channel:
    """The channel named ``name``, disabled or not; :class:`UnknownChannel` if there is none."""
    rows = _read(select(channels).where(channels.c.name == name), "reading a channel")
    if not rows:
        raise UnknownChannel(name)
    return _channel(rows[0])


def list_channels() -> list[Channel]:
    """Every channel, disabled ones too, by name."""
    return [_channel(row) for row in _read(select(channels).order_by(channels.c.name), "reading channels")]


def disable(name: str) -> Channel:
    """Stop sending to the channel ``name``: notices still due to it fail, saying so (kept, for the record)."""
    return _mark(name, {"disabled_at": utcnow()}, channels.c.disabled_at.is_(None), what="disabling a channel")


def enable(name: str) -> Channel:
    """Send to the channel ``name`` again (notices given up while it was disabled stay given up)."""
    return _mark(name, {"disabled_at": None}, what="enabling a channel")


def _mark(name: str, values: dict[str, Any], *where: Any, what: str) -> Channel:
    """Set ``values`` on the channel ``name`` (where ``where`` holds) and return it; :class:`UnknownChannel` if none."""

    def update() -> None:
        with database().engine.begin() as conn:
            conn.execute(channels.update().where(channels.c.name == name, *where).values(**values))

    retrying(update, what)
    return get(name)


def endpoint(conn: Connection, name: str) -> Endpoint | Channel | None:
    """A live channel's :class:`Endpoint`; the :class:`Channel` itself when it is disabled; ``None`` if none."""
    row = conn.execute(select(channels).where(channels.c.name == name)).first()
    if row is None:
        return None
    if row.disabled_at is not None:
        return _channel(row)
    return Endpoint(row.name, row.kind, row.url, row.email, row.secret)
