"""Who is calling, and may they: bearer tokens (or the page's cookie) mapped to a role.

A request carries its token as ``Authorization: Bearer <token>`` or, from the
operator page, in the HttpOnly cookie :data:`TOKEN_COOKIE`. A cookie is sent by
the browser on any site's request, so an unsafe method authenticated by cookie
must also carry :data:`CSRF_HEADER` equal to the cookie :data:`CSRF_COOKIE`
(double submit: another site can make the browser send cookies, not read them).

Roles: ``admin`` everything; ``starter`` starts instances and reads; ``reader``
reads; ``worker`` fetches, completes, fails and extends tasks of its topics only.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..store import tokens
from .errors import ApiError
from .revocations import TokenCache

#: The page's cookies and header (see the module's docstring).
TOKEN_COOKIE = "oms_token"
CSRF_COOKIE = "oms_csrf"
CSRF_HEADER = "X-OMS-CSRF"
#: Methods that change something: a cookie alone does not authorise them.
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Roles that may read (GET) the API's resources.
READERS = ("admin", "starter", "reader")


@dataclass(frozen=True)
class Principal:
    """The caller: a token's name, its role, and a worker token's topics (``None``: not limited to topics)."""

    name: str
    role: str
    topics: frozenset[str] | None

    def may_take(self, topic: str) -> bool:
        """Whether this caller may fetch, complete, fail or extend tasks of ``topic``."""
        if self.role == "admin":
            return True
        return self.role == "worker" and self.topics is not None and topic in self.topics


#: Every request's caller under ``--insecure-no-auth``.
ANONYMOUS = Principal("anonymous", "admin", None)


#: Live tokens this process remembers (PostgreSQL; set while the API runs): see :mod:`oms.api.revocations`.
_cache: TokenCache | None = None


def use_cache(cache: TokenCache | None) -> None:
    """Remember live tokens in ``cache`` (``None``: read every token's row on every request)."""
    global _cache
    _cache = cache


def lookup(token: str) -> Principal | None:
    """The live token's caller, or ``None`` (unknown or revoked): a revoked token is refused at once."""
    hashed = tokens.digest(token)
    cache = _cache
    found = cache.get(hashed) if cache is not None else None
    if found is None:
        generation = cache.generation if cache is not None else 0
        found = tokens.find_digest(hashed)
        if found is None:
            return None
        if cache is not None:
            cache.put(hashed, found, generation)
    return Principal(found.name, found.role, found.topics)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "Unauthorized", "the Authorization header must be 'Bearer <token>'")
    return value.strip()


def credentials(request: Request) -> str | None:
    """The request's token, without looking it up (``None`` under ``--insecure-no-auth``).

    Raises 401 without a token, 403 for a cookie-authenticated unsafe method that fails the CSRF check.
    """
    if request.app.state.insecure_no_auth:
        return None
    token = _bearer(request)
    if token is None:
        token = request.cookies.get(TOKEN_COOKIE)
        if token is None:
            raise ApiError(401, "Unauthorized", "this call needs a token: send 'Authorization: Bearer <token>'")
        if request.method in UNSAFE:
            expected = request.cookies.get(CSRF_COOKIE, "")
            given = request.headers.get(CSRF_HEADER, "")
            if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
                raise ApiError(403, "CsrfFailed", f"a request authenticated by cookie must send the {CSRF_HEADER} "
                               f"header equal to the {CSRF_COOKIE} cookie")
    return token


def resolve(token: str | None, roles: tuple[str, ...] | None = None) -> Principal:
    """The caller a token names (blocking: it reads the database); 401 if it is unknown or revoked, 403 if its
    role is not one of ``roles`` (when given). ``None`` is the insecure mode's anonymous admin."""
    principal = ANONYMOUS if token is None else lookup(token)
    if principal is None:
        raise ApiError(401, "Unauthorized", "unknown or revoked token")
    if roles is not None and principal.role not in roles:
        raise ApiError(403, "Forbidden", f"a {principal.role} token may not do this (needs {' or '.join(roles)})")
    return principal


async def authenticate(request: Request) -> Principal:
    """The caller of ``request`` (a FastAPI dependency); 401 without a live token, 403 for a failed CSRF check."""
    token = credentials(request)
    return ANONYMOUS if token is None else await run_in_threadpool(resolve, token)


@dataclass(frozen=True)
class Caller:
    """A request's token and the roles its route allows, checked by :meth:`check` in the thread that does the
    route's work: a thread hop of its own would cost about as much as the lookup (see ``benchmarks/api.py``)."""

    token: str | None
    roles: tuple[str, ...]

    def check(self) -> Principal:
        """The caller, or 401/403 (blocking: call it from a route's thread, before anything else)."""
        return resolve(self.token, self.roles)


def caller(*roles: str) -> Callable[[Request], Awaitable[Caller]]:
    """A dependency giving the route a :class:`Caller` to check first thing (no database read, no thread hop)."""

    async def found(request: Request) -> Caller:
        return Caller(credentials(request), roles)

    return found


def require_topic(principal: Principal, topic: str) -> None:
    """403 unless the caller may work on ``topic``."""
    if not principal.may_take(topic):
        raise ApiError(403, "Forbidden", f"token {principal.name!r} may not work on topic {topic!r}")
