"""The page: ``GET /`` (the operators' traffic-light board, or a person's My work), its static files, and
login/logout by token.

The page is a shell the script fills from the JSON API (``/v1``), polling every
two seconds, so it holds no rule of its own. Signing in trades the token for two
cookies: ``oms_token`` (HttpOnly, SameSite=Strict: scripts cannot read it and
other sites cannot send it) and ``oms_csrf``, which the script copies into a
header on every unsafe request (the API's double-submit check). The forms here
refuse a cross-origin ``Origin``, so another site cannot sign a browser in or out.
"""

from __future__ import annotations

import hmac
import secrets
from functools import cache
from importlib.resources import files
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from .auth import ANONYMOUS, CSRF_COOKIE, CSRF_HEADER, TOKEN_COOKIE, lookup
from .html import app_page, login_page

router = APIRouter()

#: The static files, by name, with their media types: nothing else is served from the folder. ``vendor/``: the
#: libraries shipped with the page (see ``static/vendor/README.md``: their versions and licences).
STATIC = {"common.js": "text/javascript; charset=utf-8", "page.js": "text/javascript; charset=utf-8",
          "work.js": "text/javascript; charset=utf-8", "form.js": "text/javascript; charset=utf-8",
          "report.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8",
          "vendor/uPlot.iife.min.js": "text/javascript; charset=utf-8",
          "vendor/uPlot.min.css": "text/css; charset=utf-8"}

#: Headers of every HTML response: only this origin's script and style run; no framing, no caching.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: The login form's body is one token; anything much longer is not one.
MAX_FORM_BYTES = 4096


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)


def _role(role: object) -> str:
    return str(getattr(role, "value", role))


def _same_origin(request: Request) -> bool:
    """A form post from this page, or from a client that sends no ``Origin`` (curl)."""
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}


@router.get("/", include_in_schema=False)
def page(request: Request) -> Response:
    """The board (a person's token: her My work) for a signed-in browser; the token form otherwise (also once its
    token is revoked).

    Under ``oms api --insecure-no-auth`` (loopback only) every caller is the anonymous admin, as in the API.
    """
    token = request.cookies.get(TOKEN_COOKIE)
    principal = lookup(token) if token else None
    if getattr(request.app.state, "insecure_no_auth", False):
        principal = ANONYMOUS
    if principal is None:
        response = _html(login_page())
        if token:
            response.delete_cookie(TOKEN_COOKIE, path="/")
        return response
    return _html(app_page(name=principal.name, role=_role(principal.role), csrf=request.cookies.get(CSRF_COOKIE, ""),
                          csrf_cookie=CSRF_COOKIE, csrf_header=CSRF_HEADER))


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Check the token and set the session's cookies; an unknown token gets the form again with an error."""
    if not _same_origin(request):
        return _html(login_page("Sign-in refused: the form was posted from another site."), 403)
    token = (await _form(request)).get("token", "").strip()
    if not token or await run_in_threadpool(lookup, token) is None:  # a database read: off the event loop
        return _html(login_page("Unknown or revoked token."), 401)
    response = RedirectResponse("/", status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/")
    response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(32), samesite="strict", secure=secure, path="/")
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """Drop the session's cookies; the form carries the CSRF value, so no other site can sign anyone out."""
    expected = request.cookies.get(CSRF_COOKIE, "")
    given = (await _form(request)).get("csrf", "")
    if not _same_origin(request) or not expected or not hmac.compare_digest(given, expected):
        return Response("Sign-out refused: the form did not come from this page.", status_code=403,
                        media_type="text/plain")
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@cache
def _static(name: str) -> bytes:
    return files("oms.api").joinpath("static", *name.split("/")).read_bytes()


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    """The scripts and ``page.css`` of :data:`STATIC`, shipped inside the package (no CDN: the page works offline)."""
    if name not in STATIC:
        return JSONResponse({"error": "NotFound", "detail": f"No static file {name!r}."}, status_code=404)
    return Response(_static(name), media_type=STATIC[name],
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


@router.get("/static/vendor/{name}", include_in_schema=False)
def vendor(name: str) -> Response:
    """A library of :data:`STATIC`'s ``vendor/`` (the report's charts)."""
    return static(f"vendor/{name}")
