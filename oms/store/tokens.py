"""Bearer tokens of the HTTP API: created once and shown once, stored as hashes, revoked at once.

A token is ``secrets.token_urlsafe(32)``: 256 random bits, so its SHA-256 needs no
salt or slow hash, and can be found by an index. A revoked token stops working at
the next request, in every API process: each request reads the token's row, except
on PostgreSQL, where API processes remember live tokens until told of a change on
:data:`CHANNEL` (see :mod:`oms.api.revocations`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, select, text

from ..exceptions import InvalidArgument, OmsError
from ..model.names import user_name
from .db import database, retrying, transaction
from .tables import TokenRow

#: What each role may do: admin everything; starter starts and reads; reader reads; worker pulls its topics;
#: signaller sends signals only (a portal that says "the form was submitted").
ROLES = ("admin", "starter", "reader", "worker", "signaller")
#: PostgreSQL channel told of every token created or revoked (API processes then forget the tokens they cached).
CHANNEL = "oms_api_tokens"


class UnknownToken(OmsError, LookupError):
    """No token has this name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no token is named {name!r} (see `oms token list`)")


@dataclass(frozen=True)
class TokenInfo:
    """A token as ``oms token list`` shows it: never the secret."""

    name: str
    role: str
    #: A worker token's topics; ``None`` for the other roles.
    topics: frozenset[str] | None
    created_at: datetime
    revoked_at: datetime | None


def digest(token: str) -> str:
    """Hex SHA-256 of a token: what the database keeps."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


#: What a request's lookup reads.
_COLUMNS = (TokenRow.name, TokenRow.token_hash, TokenRow.role, TokenRow.topics, TokenRow.created_at,
            TokenRow.revoked_at)


def _info(row: TokenRow | Row[Any]) -> TokenInfo:
    topics = frozenset(row.topics.split(",")) if row.topics else None
    return TokenInfo(row.name, row.role, topics, row.created_at, row.revoked_at)


def _check(role: str, topics: list[str] | None) -> str | None:
    if role not in ROLES:
        raise InvalidArgument(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    if role == "worker":
        if not topics:
            raise InvalidArgument("a worker token needs its topics (--topics a,b)")
        return ",".join(sorted({user_name(t, "topic") for t in topics}))
    if topics:
        raise InvalidArgument(f"only worker tokens have topics, not {role!r} ones")
    return None


def create(role: str, *, name: str | None = None, topics: list[str] | None = None) -> tuple[str, TokenInfo]:
    """Make a token; return it (the only time it is shown) and what is stored about it.

    A revoked token's name may be used again; a live one's may not.
    """
    joined = _check(role, topics)
    name = user_name(name, "token name") if name is not None else f"{role}-{secrets.token_hex(3)}"
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with transaction() as session:
        found = session.get(TokenRow, name)
        if found is not None and found.revoked_at is None:
            raise InvalidArgument(f"a token named {name!r} exists: revoke it first, or choose another --name")
        if found is not None:
            session.delete(found)
            session.flush()
        row = TokenRow(name=name, token_hash=digest(token), role=role, topics=joined, created_at=now,
                       revoked_at=None)
        session.add(row)
        notify(session.connection(), name)
        return token, _info(row)


def list_tokens() -> list[TokenInfo]:
    """Every token, revoked ones too, by name."""
    with transaction() as session:
        return [_info(row) for row in session.scalars(select(TokenRow).order_by(TokenRow.name))]


def revoke(name: str) -> TokenInfo:
    """Revoke a token by name: the next request that carries it is refused. Raises :class:`UnknownToken`."""
    with transaction() as session:
        row = session.get(TokenRow, name)
        if row is None:
            raise UnknownToken(name)
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
        notify(session.connection(), name)
        return _info(row)


def notify(conn: Connection, name: str) -> None:
    """Tell the API processes, when the transaction commits, that a token changed (PostgreSQL): they forget the
    tokens they remember, an API token's or a person's."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, :name)"), {"channel": CHANNEL, "name": name})


def find(token: str) -> TokenInfo | None:
    """The live token whose secret this is, or ``None`` (unknown or revoked)."""
    return find_digest(digest(token))


def find_digest(hashed: str) -> TokenInfo | None:
    """The live token whose :func:`digest` this is, or ``None``: one statement."""
    engine = database().reader  # every request makes it
    query = select(*_COLUMNS).where(TokenRow.token_hash == hashed)

    def read() -> Row[Any] | None:
        with engine.connect() as connection:
            return connection.execute(query).first()

    row = retrying(read, "reading a token")
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, hashed):
        return None
    return _info(row)


def any_live() -> bool:
    """Whether at least one token can be used (``oms api`` refuses to start with none)."""
    with transaction() as session:
        return session.scalars(select(TokenRow.name).where(TokenRow.revoked_at.is_(None)).limit(1)).first() is not None
