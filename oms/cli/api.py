"""``oms api`` (the HTTP API on uvicorn) and ``oms token create | list | revoke`` (who may call it; people's own
tokens: :mod:`.users`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from ..attach import APP_VARIABLE, load
from ..celery.config import configure
from ..settings import is_loopback
from ..store import tokens
from ..store.db import database
from .base import CONTEXT, OmsGroup, die, env_option

if TYPE_CHECKING:
    from fastapi import FastAPI


@click.command(context_settings=CONTEXT)
@env_option("--host", env="OMS_API_HOST", default="127.0.0.1", show_default=True, help="Address to listen on.")
@env_option("--port", env="OMS_API_PORT", default=8000, show_default=True, type=click.IntRange(0, 65535),
            help="Port to listen on.")
@env_option("--insecure-no-auth", env="OMS_API_INSECURE_NO_AUTH", is_flag=True,
            help="Accept every request as an admin, with no token: loopback addresses only, to try it out.")
@env_option("--access-log/--no-access-log", env="OMS_API_ACCESS_LOG", default=True, show_default=True,
            help="Log one line per request (method, path, status; never tokens or bodies).")
@env_option("--workers", env="OMS_API_WORKERS", default=1, show_default=True, type=click.IntRange(1, 64),
            help="Processes serving the port: one Python process serves about one core's worth of requests.")
@env_option("--forwarded-allow-ips", env="OMS_API_FORWARDED_ALLOW_IPS", metavar="ADDRESSES",
            help="Behind a reverse proxy at these addresses (comma-separated; '*': any), believe its "
                 "X-Forwarded-Proto and X-Forwarded-For: the page then signs in over the proxy's HTTPS, with Secure "
                 "cookies, and the access log shows the clients' addresses. Default: no proxy is believed.")
def api(host: str, port: int, insecure_no_auth: bool, access_log: bool, workers: int,
        forwarded_allow_ips: str | None) -> None:
    """Serve the HTTP API: JSON under /v1, /docs, /metrics, /healthz, /readyz.

    Refuses to start while the schema is behind (run `oms db upgrade`), and while
    no token exists unless --insecure-no-auth is given on a loopback address.

    \b
    Examples:
      oms token create --role admin --name ops      # prints the token once
      oms api --port 8000
      oms api --workers 2                            # two processes, for two cores' worth of requests
      oms api --forwarded-allow-ips 10.0.0.5         # behind a TLS proxy at 10.0.0.5
      curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/v1/workflows
    """
    # FastAPI and uvicorn cost 240 ms: every other command starts without them
    import uvicorn  # noqa: PLC0415

    from ..api.app import create_app  # noqa: PLC0415

    configure(api_host=host, api_port=port, api_insecure_no_auth=insecure_no_auth)
    database()  # a schema behind or ahead is refused here, in one line
    if insecure_no_auth and not is_loopback(host):
        die(f"--insecure-no-auth is accepted on a loopback address only, not {host!r}")
    if not insecure_no_auth and not tokens.any_live():
        die("no API token exists: create one with `oms token create --role admin`, or try the API on loopback "
            "with --insecure-no-auth")
    proxy: dict[str, Any] = ({"proxy_headers": True, "forwarded_allow_ips": forwarded_allow_ips}
                             if forwarded_allow_ips else {"proxy_headers": False})
    if workers == 1:
        uvicorn.run(create_app(insecure_no_auth=insecure_no_auth), host=host, port=port, access_log=access_log,
                    log_level="info", **proxy)
        return
    # each process reads its settings from the environment (worker_app)
    os.environ.update(OMS_API_HOST=host, OMS_API_PORT=str(port), OMS_API_INSECURE_NO_AUTH=str(insecure_no_auth))
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, host=host, port=port,
                access_log=access_log, log_level="info", **proxy)


def worker_app() -> FastAPI:
    """The application of one process of ``oms api --workers N``: settings from the environment the command set, the
    shop's Celery app (``oms -A proj``) loaded first as the command loaded it."""
    from ..api.app import create_app  # noqa: PLC0415

    if name := os.environ.get(APP_VARIABLE):
        load(name)
    return create_app()


@click.group(cls=OmsGroup, context_settings=CONTEXT)
def token() -> None:
    """Bearer tokens of the HTTP API: stored as hashes, shown once, revoked at once.

    \b
    Roles: admin (everything), starter (start and read instances, send signals), reader (GET only),
    worker (fetch, complete, fail, extend tasks of its --topics), signaller (send signals only).
    People have tokens of their own: see `oms user`.

    \b
    Examples:
      TOKEN=$(oms token create --role starter --name portal)
      oms token list
      oms token revoke portal
    """


@token.command(context_settings=CONTEXT)
@env_option("--role", env="OMS_TOKEN_ROLE", required=True, type=click.Choice(tokens.ROLES),
            help="What the token may do.")
@env_option("--topics", env="OMS_TOKEN_TOPICS", metavar="A,B", help="A worker token's topics, comma-separated.")
@env_option("--name", env="OMS_TOKEN_NAME", metavar="NAME",
            help="Its name for `oms token revoke` (default: the role and 6 hex digits).")
def create(role: str, topics: str | None, name: str | None) -> None:
    """Make a token and print it (the only time it is shown; only its hash is kept).

    \b
    Examples:
      oms token create --role admin --name ops
      oms token create --role worker --topics validate_tax_id --name irs-bot
      oms token create --role signaller --name portal-signals
    """
    secret, info = tokens.create(role, name=name, topics=[t.strip() for t in topics.split(",")] if topics else None)
    click.echo(f"created token {info.name!r} ({info.role}); it is shown once, keep it:", err=True)
    click.echo(secret)


@token.command("list", context_settings=CONTEXT)
def list_() -> None:
    """Every token's name, role, topics and state (never the token).

    \b
    Examples:
      oms token list
    """
    for info in tokens.list_tokens():
        state = f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "live"
        topics = ",".join(sorted(info.topics)) if info.topics else "-"
        click.echo(f"{info.name:<24} {info.role:<9} {topics:<32} created {info.created_at:%Y-%m-%d %H:%M}  {state}")


@token.command(context_settings=CONTEXT)
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke the token NAME: its next request is refused (401), in every API process.

    \b
    Examples:
      oms token revoke portal
    """
    tokens.revoke(name)
    click.echo(f"revoked {name}")
