"""People who work human steps: their groups, e-mail address and role, and their personal token's hash.

A person's token is made as an API token is (:mod:`oms.store.tokens`): shown once,
kept as its SHA-256. Disabling her (:func:`oms.engine.people.disable_user`) gives her
claims back and stops her token at the next request; enabling her again, or a lost
token, issues a new one (the old one never works again). Every change reaches the
API processes' token caches as it commits (:func:`~oms.store.tokens.notify`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select
from sqlalchemy.exc import IntegrityError

from ..durations import utcnow
from ..exceptions import InvalidArgument, UnknownUser
from ..model.names import user_name
from .db import database, retrying
from .tables import users
from .tokens import digest, notify

#: A person's roles: ``person`` works her steps; a ``supervisor`` may also reassign her groups' steps.
ROLES = ("person", "supervisor")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
MAX_GROUPS = 100


@dataclass(frozen=True)
class User:
    """A person as the engine knows her (never her token)."""

    name: str
    groups: tuple[str, ...]
    email: str | None
    role: str
    created_at: datetime
    disabled_at: datetime | None

    @property
    def supervisor(self) -> bool:
        return self.role == "supervisor"


def _user(row: Row[Any]) -> User:
    return User(row.name, tuple(row.groups or ()), row.email, row.role, row.created_at, row.disabled_at)


_COLUMNS = (users.c.name, users.c.groups, users.c.email, users.c.role, users.c.created_at, users.c.disabled_at)


def check_groups(groups: list[str] | tuple[str, ...]) -> list[str]:
    """Group names as stored: each a name users may take, no repeats, at most :data:`MAX_GROUPS`."""
    if len(groups) > MAX_GROUPS:
        raise InvalidArgument(f"at most {MAX_GROUPS} groups, not {len(groups)}")
    return sorted({user_name(group, "group name") for group in groups})


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidArgument(f"unknown role {role!r} for a person: expected one of {', '.join(ROLES)}")
    return role


def _check_email(email: str | None) -> str | None:
    if email is not None and (len(email) > 320 or not _EMAIL.fullmatch(email)):
        raise InvalidArgument(f"e-mail address {email!r:.80} does not look like name@domain.tld")
    return email


def create(name: str, groups: list[str], *, email: str | None = None, role: str = "person") -> tuple[str, User]:
    """Add a person; return her token (the only time it is shown) and what is stored about her."""
    name = user_name(name, "user name")
    checked = check_groups(groups)
    _check_role(role)
    _check_email(email)
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = {"name": name, "groups": checked, "email": email, "role": role, "token_hash": digest(token),
           "created_at": now, "disabled_at": None}
    db = database()

    def insert() -> None:
        with db.engine.begin() as conn:
            conn.execute(users.insert().values(**row))

    try:
        retrying(insert, "adding a person")
    except IntegrityError:
        raise InvalidArgument(f"a user named {name!r} exists already (`oms user list`)") from None
    return token, User(name, tuple(checked), email, role, now, None)


def get(name: str, *, live: bool = True, conn: Connection | None = None) -> User:
    """The person named ``name``; :class:`UnknownUser` if there is none (or, when ``live``, she is disabled)."""
    name = user_name(name, "user name")
    query = select(*_COLUMNS).where(users.c.name == name)
    if conn is not None:
        row = conn.execute(query).first()
    else:
        def read() -> Row[Any] | None:
            with database().reader.connect() as c:
                return c.execute(query).first()

        row = retrying(read, "reading a person")
    if row is None:
        raise UnknownUser(name)
    found = _user(row)
    if live and found.disabled_at is not None:
        raise UnknownUser(name, disabled=True)
    return found


def disable(conn: Connection, name: str, now: datetime) -> None:
    """Mark the person disabled (in the caller's transaction, which gives her claims back); every API process
    forgets her token as it commits (:func:`~oms.store.tokens.notify`)."""
    conn.execute(users.update().where(users.c.name == name).values(disabled_at=now))
    notify(conn, name)


#: Leave a field of :func:`update` as it is.
KEEP: Any = object()


def update(name: str, *, groups: list[str] | None = None, email: str | None = KEEP, role: str | None = None) -> User:
    """Change a person's groups, e-mail address (``None``: none) or role; what is not given stays. Her held steps stay
    hers. Raises :class:`UnknownUser` if there is no such person (disabled people may be changed)."""
    values: dict[str, Any] = {}
    if groups is not None:
        values["groups"] = check_groups(groups)
    if email is not KEEP:
        values["email"] = _check_email(email)
    if role is not None:
        values["role"] = _check_role(role)
    if not values:
        raise InvalidArgument("nothing to change: give groups, an e-mail address or a role")
    return _change(name, values, "changing a person")


def new_token(name: str, *, enable: bool = False) -> tuple[str, User]:
    """A new personal token for ``name`` (the only time it is shown); her old one stops at once. ``enable``: she is
    enabled too, if she was disabled; otherwise a disabled person is refused (:class:`UnknownUser`)."""
    token = secrets.token_urlsafe(32)
    if enable:
        return token, _change(name, {"token_hash": digest(token), "disabled_at": None}, "enabling a person")
    # a disabled person gets a token only by being enabled
    return token, _change(name, {"token_hash": digest(token)}, "issuing a person's token",
                          users.c.disabled_at.is_(None))


def _change(name: str, values: dict[str, Any], what: str, *where: Any) -> User:
    """Set ``values`` on the person ``name`` where ``where`` holds; :class:`UnknownUser` (saying if she is disabled)
    when no row was changed."""
    name = user_name(name, "user name")

    def change() -> Row[Any] | None:
        with database().engine.begin() as conn:
            row = conn.execute(users.update().where(users.c.name == name, *where).values(**values)
                               .returning(*_COLUMNS)).first()
            if row is not None:
                notify(conn, name)
            return row

    row = retrying(change, what)
    if row is None:
        get(name)  # UnknownUser, saying whether she is disabled
        raise UnknownUser(name)
    return _user(row)


def list_users() -> list[User]:
    """Everyone, disabled people too, by name."""
    def read() -> list[User]:
        with database().reader.connect() as conn:
            return [_user(row) for row in conn.execute(select(*_COLUMNS).order_by(users.c.name))]

    return retrying(read, "reading people")


def find_digest(hashed: str) -> User | None:
    """The live person whose token has this :func:`~oms.store.tokens.digest`, or ``None``."""
    def read() -> Row[Any] | None:
        with database().reader.connect() as conn:
            return conn.execute(select(*_COLUMNS).where(users.c.token_hash == hashed)).first()

    row = retrying(read, "reading a person's token")
    if row is None or row.disabled_at is not None:
        return None
    return _user(row)
