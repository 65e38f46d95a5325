"""The HTTP API's factory: routers, error handlers, the body's size limit and deadline, and what it checks as it starts.

Every route calls the same public functions Python users call; no rule lives here.
Starting refuses (and the process exits) when the schema is not this code's, or
when no token exists and ``--insecure-no-auth`` was not given; insecure mode is
accepted on a loopback address only, and announced at every start.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route

from ..celery.app import current
from ..settings import get_settings, is_loopback
from ..store import db, tokens
from ..store.db import database
from . import (
    auth,
    batches,
    board,
    calendars,
    contract,
    errors,
    health,
    instances,
    metrics,
    notices,
    page,
    people,
    reports,
    routing,
    signals,
    tasks,
    workflows,
)
from .bodies import JsonRoute
from .polls import PollHub
from .revocations import TokenCache

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]
#: Room for the envelope around the largest payload (``{"payload": …}``, a result's ``worker_id``).
ENVELOPE_BYTES = 64 * 1024


class BodyGuard:
    """Every HTTP request's body, before a route reads it: over ``OMS_MAX_PAYLOAD_BYTES`` (plus its envelope) it is
    413, before it is read; not all arrived within ``OMS_API_BODY_TIMEOUT`` it is 408 and the connection is closed,
    not held open for a client that declared more than it sends. Also: a request waits out an unreachable database
    ``OMS_API_DB_RETRY_SECONDS`` only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # a caller over HTTP hears 503 after a few seconds of database outage, not a worker's minutes
        waiting = db.retry_seconds.set(get_settings().api_db_retry_seconds)
        try:
            await self._guarded(scope, receive, send)
        finally:
            db.retry_seconds.reset(waiting)

    async def _guarded(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        settings = get_settings()
        limit = settings.max_payload_bytes + ENVELOPE_BYTES
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(limit, scope, receive, send)
        deadline = asyncio.get_running_loop().time() + settings.api_body_timeout
        seen = 0
        whole = False  # the body has all arrived: later receives (a long poll's disconnect watch) wait unbounded

        async def guarded() -> Message:
            nonlocal seen, whole
            if whole:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, f"the request body did not all arrive within {settings.api_body_timeout:g}"
                                    " s (OMS_API_BODY_TIMEOUT)", headers={"Connection": "close"}) from None
            whole = message["type"] != "http.request" or not message.get("more_body", False)
            seen += len(message.get("body", b""))
            if seen > limit:  # an HTTPException: FastAPI turns any other error while reading a body into a 400
                raise HTTPException(413, f"the request body is over {limit} bytes (OMS_MAX_PAYLOAD_BYTES plus 64 KiB)",
                                    headers={"Connection": "close"})
            return message

        await self.app(scope, guarded, send)


async def _too_large(limit: int, scope: Scope, receive: Callable[[], Awaitable[Message]],
                     send: Callable[[Message], Awaitable[None]]) -> None:
    response = errors.body(413, "PayloadTooLarge", f"the request body is over {limit} bytes (OMS_MAX_PAYLOAD_BYTES "
                           "plus 64 KiB)")
    await response(scope, receive, send)


def _check_start(insecure: bool) -> None:
    """Refuse to serve a database whose schema is not this code's, or with no token unless insecure."""
    database()  # raises SchemaBehind / SchemaAhead / ConfigurationError, naming the command
    if insecure:
        host = get_settings().api_host
        if not is_loopback(host):
            raise errors.ApiError(500, "Refused", f"--insecure-no-auth is accepted on a loopback address only, "
                                  f"not {host!r}")
        return
    if not tokens.any_live():
        raise errors.ApiError(500, "Refused", "no API token exists: create one with `oms token create --role "
                              "admin`, or try it out on loopback with --insecure-no-auth")


def announce_insecure() -> None:
    """Say loudly, at every start, that anyone who reaches the port is an admin."""
    print("WARNING: --insecure-no-auth: the HTTP API accepts every request as an admin, with no token; it listens "
          "on loopback only", file=sys.stderr, flush=True)


#: Every router of the API; each one's paths are whole (a router's prefix is its own). A request is matched against
#: them in this order, so the pull workers' loop (fetch, complete) comes first; no two share a method and path.
ROUTERS = (tasks.router, batches.router, workflows.router, calendars.router, instances.router, people.router,
           signals.router, board.router, reports.router, notices.router, metrics.router, health.router, page.router)


def served(app: FastAPI) -> list[tuple[str, str]]:
    """Every ``(method, path template)`` the application serves: its own routes (the docs) and its routers'."""
    found: list[tuple[str, str]] = []
    for route in app.router.routes:
        if isinstance(route, Mount):
            found.append(("GET", route.path))
        elif isinstance(route, Route):  # APIRoute too
            found += [(method, route.path) for method in route.methods or () if method != "HEAD"]
        else:  # a router included (FastAPI keeps it whole)
            included: Any = route
            found += [(method, r.path) for r in included.original_router.routes
                      for method in getattr(r, "methods", None) or () if method != "HEAD"]
    return found


def create_app(*, insecure_no_auth: bool | None = None) -> FastAPI:
    """Build the API. ``insecure_no_auth`` defaults to ``OMS_API_INSECURE_NO_AUTH`` (under ``uvicorn oms.api:app``
    the loopback check reads ``OMS_API_HOST``, as uvicorn does not tell the application its address)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        insecure = get_settings().api_insecure_no_auth if insecure_no_auth is None else insecure_no_auth
        await run_in_threadpool(_check_start, insecure)
        # Celery finds its result backend on a process's first publish by reading every installed package's entry
        # points (tens of milliseconds): paid here, not by the first start request
        await run_in_threadpool(lambda: current().backend)
        if insecure:
            announce_insecure()
        app.state.insecure_no_auth = insecure
        app.state.polls = PollHub()
        database_url = get_settings().database_url
        cache = TokenCache(database_url) if database().dialect == "postgresql" and not insecure else None
        auth.use_cache(cache)
        try:
            yield
        finally:
            app.state.polls.close()
            auth.use_cache(None)
            if cache is not None:
                cache.close()

    app = FastAPIOffline(  # FastAPI whose /docs loads its scripts from this server, not a CDN
        redoc_url=None,  # ReDoc's page shows its maker's logo from a CDN: /docs is the one
        title="HMS-OMS",
        summary="Workflows with per-step SLAs: define, start, watch, and pull steps over HTTP.",
        version="1",
        lifespan=lifespan,
        # operationId = the route function's name (`fetch_task`, `start_instance`): what generated clients call
        generate_unique_id_function=lambda route: route.name,
        dependencies=[Depends(auth.authorize)],  # every route's gate: closed unless auth.RULES or .PUBLIC says
    )
    app.state.insecure_no_auth = False
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    contract.install(app)
    if unruled := [f"{method} {path}" for method, path in served(app) if (method, path) not in auth.ALL]:
        raise RuntimeError(f"no rule in oms.api.auth.RULES (or .PUBLIC) says who may call {', '.join(unruled)}")
    if untagged := {str(tag) for route in routing.routes(app) for tag in route.tags} - set(contract.TAGS):
        raise RuntimeError(f"oms.api.contract.TAGS does not place the tags {sorted(untagged)} in /docs")
    if loose := [route.path for router in ROUTERS for route in router.routes
                 if isinstance(route, APIRoute) and route.body_field is not None and not isinstance(route, JsonRoute)]:
        raise RuntimeError(f"{', '.join(loose)} read a JSON body without refusing duplicate keys: give its router "
                           "route_class=oms.api.bodies.JsonRoute")
    app.add_middleware(BodyGuard)
    return app
