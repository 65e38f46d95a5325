"""Who is calling, and may they: bearer tokens (or the page's cookie) mapped to a role.

A request carries its token as ``Authorization: Bearer <token>`` or, from the
operator page, in the HttpOnly cookie :data:`TOKEN_COOKIE`. A cookie is sent by
the browser on any site's request, so an unsafe method authenticated by cookie
must also carry :data:`CSRF_HEADER` equal to the cookie :data:`CSRF_COOKIE`
(double submit: another site can make the browser send cookies, not read them).

Roles of API tokens (:mod:`oms.store.tokens`): ``admin`` everything; ``starter``
starts instances, sends signals and reads; ``reader`` reads; ``worker`` fetches,
completes, fails and extends tasks of its topics only; ``signaller`` sends signals
only. A person's own token (:mod:`oms.store.users`) has her role, ``person`` or
``supervisor``: she works the human steps she may see, as herself, and nothing else.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..store import tokens, users
from .errors import ApiError
from .revocations import Holder, TokenCache

#: The page's cookies and header (see the module's docstring).
TOKEN_COOKIE = "oms_token"
CSRF_COOKIE = "oms_csrf"
CSRF_HEADER = "X-OMS-CSRF"
#: Methods that change something: a cookie alone does not authorise them.
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Roles that may read (GET) the API's resources.
READERS = ("admin", "starter", "reader")
#: The roles of a person's own token (``oms user create``): she acts as herself, on human steps only.
PEOPLE = users.ROLES


@dataclass(frozen=True)
class Principal:
    """The caller: a token's name, its role, a worker token's topics (``None``: not limited to topics), and a
    person's groups."""

    name: str
    role: str
    topics: frozenset[str] | None
    groups: tuple[str, ...] = ()

    @property
    def person(self) -> bool:
        """Whether the caller is a person (her own token), who acts as herself."""
        return self.role in PEOPLE

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
        found = tokens.find_digest(hashed) or users.find_digest(hashed)
        if found is None:
            return None
        if cache is not None:
            cache.put(hashed, found, generation)
    return _principal(found)


def _principal(found: Holder) -> Principal:
    if isinstance(found, users.User):
        return Principal(found.name, found.role, None, found.groups)
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


#: Roles that may start instances (a portal), and those that work on tasks (each worker token on its topics).
STARTERS = ("admin", "starter")
WORKERS = ("admin", "worker")
ADMINS = ("admin",)
#: Roles that may send signals (a portal; a signaller token does nothing else).
SIGNALLERS = ("admin", "starter", "signaller")
#: Who reads the notices sent and the channels defined (the operators' board shows them to these).
NOTICE_READERS = ("admin", "reader")
#: Who reads an inbox or a human step: a person her own; an admin anyone's (``?user=``).
INBOXES = ("admin", *PEOPLE)

#: Who may call each route of the API, by method and path template: one table, checked for every request by
#: :func:`authorize`. A route missing from it (and from :data:`PUBLIC`) is refused to everyone, and
#: ``tests/unit/test_api.py`` fails while one exists.
RULES: dict[tuple[str, str], tuple[str, ...]] = {
    ("PUT", "/v1/workflows/{workflow_id}"): ADMINS,
    ("GET", "/v1/workflows"): READERS,
    ("GET", "/v1/workflows/{workflow_id}"): READERS,
    ("PUT", "/v1/calendars/{calendar_id}"): ADMINS,
    ("GET", "/v1/calendars"): READERS,
    ("GET", "/v1/calendars/{calendar_id}"): READERS,
    ("POST", "/v1/workflows/{workflow_id}/instances"): STARTERS,
    ("GET", "/v1/instances"): READERS,
    ("GET", "/v1/instances/{instance_id}"): READERS,
    ("GET", "/v1/instances/{instance_id}/history"): READERS,
    ("POST", "/v1/instances/{instance_id}/cancel"): ADMINS,
    ("POST", "/v1/instances/{instance_id}/retry"): ADMINS,
    ("GET", "/v1/overdue"): READERS,
    ("GET", "/v1/sla/summary"): READERS,
    ("GET", "/v1/sla/report"): READERS,
    ("GET", "/v1/board"): READERS,
    ("POST", "/v1/topics/{topic}/fetch"): WORKERS,
    #: a person completes or fails her own human step, as herself (oms.api.tasks checks it is hers)
    ("POST", "/v1/tasks/{task_id}/complete"): (*WORKERS, *PEOPLE),
    ("POST", "/v1/tasks/{task_id}/fail"): (*WORKERS, *PEOPLE),
    ("POST", "/v1/tasks/{task_id}/extend"): WORKERS,
    #: batches (oms.api.batches): as the single routes, each task checked as they check it
    ("POST", "/v1/topics/{topic}/fetch-batch"): WORKERS,
    ("POST", "/v1/batches/complete"): (*WORKERS, *PEOPLE),
    ("POST", "/v1/batches/fail"): (*WORKERS, *PEOPLE),
    ("POST", "/v1/tasks/{task_id}/pause"): WORKERS,
    #: a paused clock runs again when the citizen answers: the portal (a starter) may say so, as may the workers
    ("POST", "/v1/tasks/{task_id}/resume"): ("admin", "starter", "worker"),
    ("GET", "/metrics"): ("admin", "reader"),
    # people in the loop (oms.api.people, oms.api.signals)
    ("GET", "/v1/inbox"): INBOXES,
    ("GET", "/v1/tasks/{task_id}"): INBOXES,
    ("POST", "/v1/tasks/{task_id}/claim"): PEOPLE,
    ("POST", "/v1/tasks/{task_id}/release"): PEOPLE,
    #: a supervisor, of the step's candidates (oms.api.people checks it)
    ("POST", "/v1/tasks/{task_id}/reassign"): ("admin", "supervisor"),
    ("POST", "/v1/instances/{instance_id}/signals/{name}"): SIGNALLERS,
    ("POST", "/v1/workflows/{workflow_id}/signals/{name}"): SIGNALLERS,
    # notices and their channels (oms.api.notices): they name people and the agency's channels, so not a portal's
    # (starter) business; a channel is defined by an admin, its secret never read back
    ("GET", "/v1/notices"): NOTICE_READERS,
    ("GET", "/v1/channels"): NOTICE_READERS,
    ("POST", "/v1/channels"): ADMINS,
}

#: The routes anyone may call, without a token: the probes, the page's shell and sign-in (which read the
#: cookie themselves), its static files and the chart library it ships, and the API's own documentation (it holds
#: no data).
PUBLIC: frozenset[tuple[str, str]] = frozenset({
    ("GET", "/healthz"), ("GET", "/readyz"),
    ("GET", "/"), ("POST", "/login"), ("POST", "/logout"), ("GET", "/static/{name}"),
    ("GET", "/static/vendor/{name}"),
    ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/openapi.json"), ("GET", "/static-offline-docs"),
})


#: Every route the API may serve, ruled or public.
ALL = frozenset(RULES) | PUBLIC


def _cached(token: str) -> Principal | None:
    """The caller of a token the revocation cache holds (no database read), else ``None``."""
    cache = _cache
    found = cache.get(tokens.digest(token)) if cache is not None else None
    return None if found is None else _principal(found)


async def authorize(request: Request) -> None:
    """Every route's gate (an application-wide dependency): public routes pass; the others need a live token
    whose role the route's rule in :data:`RULES` names (401 without one, 403 with another role, 403 for a
    route no rule names). The caller is kept in ``request.state.principal``."""
    route = request.scope.get("route")
    method = "GET" if request.method == "HEAD" else request.method
    key = (method, getattr(route, "path", request.url.path))
    if key in PUBLIC:
        return
    roles = RULES.get(key)
    if roles is None:
        raise ApiError(403, "Forbidden", f"no rule says who may call {method} {key[1]}: refused to everyone")
    token = credentials(request)
    cached = _cached(token) if token is not None else None
    if cached is not None and cached.role not in roles:
        raise ApiError(403, "Forbidden", f"a {cached.role} token may not do this (needs {' or '.join(roles)})")
    request.state.principal = cached or await run_in_threadpool(resolve, token, roles)


async def current(request: Request) -> Principal:
    """The caller :func:`authorize` let in (a dependency for routes that look further: a worker's topics); ``async``,
    as FastAPI runs a plain ``def`` dependency on its thread pool, a hop per request for reading one attribute."""
    principal: Principal = request.state.principal
    return principal


def require_topic(principal: Principal, topic: str) -> None:
    """403 unless the caller may work on ``topic``."""
    if not principal.may_take(topic):
        raise ApiError(403, "Forbidden", f"token {principal.name!r} may not work on topic {topic!r}")
