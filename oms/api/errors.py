"""Every error as ``{"error": <type>, "detail": <one sentence>}`` with its status: one table, no tracebacks.

The engine's typed exceptions map one to one to statuses (:data:`STATUSES`, the
first matching class wins); FastAPI's own errors (a body that is not JSON, a
field of the wrong type) become 400 and 422; an unreachable database or broker
is 503; anything else is a 500 whose detail says nothing of the internals (the
traceback goes to the server's log).
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any, Literal

import kombu.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, create_model
from starlette.exceptions import HTTPException

from .. import exceptions as oms_errors
from ..model.forms import FormError
from ..store.channels import ChannelExists, UnknownChannel
from ..store.db import TRANSIENT
from ..store.tokens import UnknownToken
from .routing import allowed

logger = logging.getLogger(__name__)

#: Exception class -> HTTP status; the first class that matches wins (subclasses before their bases).
STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (oms_errors.TooManyItems, 422),
    (oms_errors.InvalidPayload, 422),
    (oms_errors.InvalidDefinition, 422),
    (oms_errors.InvalidArgument, 422),  # UnknownSignal too
    (oms_errors.UnknownUser, 404),
    (oms_errors.UnknownBusinessKey, 404),
    (oms_errors.NotAssigned, 403),
    (oms_errors.UnknownWorkflow, 404),
    (oms_errors.UnknownCalendar, 404),
    (oms_errors.UnknownInstance, 404),
    (oms_errors.TaskNotFound, 404),
    (UnknownToken, 404),
    (UnknownChannel, 404),
    (ChannelExists, 409),
    (oms_errors.LeaseLost, 409),
    (oms_errors.TaskAlreadyFinished, 409),
    (oms_errors.TaskNotClaimed, 409),
    (oms_errors.NotLeaseHolder, 409),
    (oms_errors.InstanceFinished, 409),
    (oms_errors.TaskClaimed, 409),
    (oms_errors.NotAHumanStep, 409),
    (oms_errors.SignalRefused, 409),
    (oms_errors.BusinessKeyInUse, 409),
    (oms_errors.IdempotencyConflict, 409),
    (oms_errors.Conflict, 409),
    (oms_errors.InvalidTransition, 409),
    (oms_errors.BrokerUnavailable, 503),
    (oms_errors.ConfigurationError, 503),
)
#: Names of statuses raised without an exception of the engine.
#: (FastAPI's own 400 is a body it could not parse as JSON: not UTF-8, or nested past the parser's limit.)
NAMES = {400: "MalformedJson", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
         408: "RequestTimeout", 409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
         422: "InvalidRequest", 503: "Unavailable"}
#: The names the API gives errors of its own (:class:`ApiError`, :func:`body`), by status, besides :data:`NAMES`:
#: with the engine's exceptions (:data:`STATUSES`), every ``error`` a status can carry (the OpenAPI document's
#: enums, :func:`error_names`).
RAISED: dict[int, tuple[str, ...]] = {
    400: ("MalformedJson", "InvalidHeader"),  # a body that is not JSON or repeats a key; a bad Idempotency-Key
    401: ("Unauthorized",),
    403: ("Forbidden", "CsrfFailed"),
    404: ("NotFound",),
    405: ("MethodNotAllowed",),
    408: ("RequestTimeout",),  # the body did not arrive within OMS_API_BODY_TIMEOUT
    413: ("PayloadTooLarge",),
    415: ("UnsupportedMediaType",),
    422: ("InvalidRequest",),  # FastAPI's own check of a parameter or body field
    500: ("InternalError",),
    503: ("Unavailable", "DatabaseUnavailable", "BrokerUnavailable", "NotReady"),
}


def _subclasses(kind: type[BaseException]) -> list[type[BaseException]]:
    found = [kind]
    for sub in kind.__subclasses__():
        found += _subclasses(sub)
    return found


@cache
def error_names() -> dict[int, tuple[str, ...]]:
    """Every ``error`` each status can carry: the API's own names, and each engine exception (and subclass) that
    :data:`STATUSES` gives that status, sorted."""
    found: dict[int, set[str]] = {status: set(names) for status, names in RAISED.items()}
    for status, name in NAMES.items():
        found.setdefault(status, set()).add(name)
    for kind in {sub for base, _ in STATUSES for sub in _subclasses(base)}:
        status = next(status for base, status in STATUSES if issubclass(kind, base))
        found.setdefault(status, set()).add(kind.__name__)
    return {status: tuple(sorted(names)) for status, names in sorted(found.items())}


class ErrorBody(BaseModel):
    """Every error's body."""

    error: str = Field(description="The error's type: an exception's name (`TaskClaimed`) or `Forbidden`, …")
    detail: str = Field(description="One sentence saying what is wrong and, where it helps, what to do.")


class FormErrorBody(ErrorBody):
    """A 422: with ``fields`` when a result (or a signal's data) does not fit its step's form (``FormError``)."""

    fields: dict[str, str] | None = Field(None, description="`FormError` only: each refused field's path "
                                          "(`inspector`, `address.zip`) -> why, to show beside it.")


#: What each documented status means, in the OpenAPI document of the routes that answer it.
MEANINGS = {400: "The body is not JSON (not UTF-8, or a key repeated), or a header is malformed.",
            401: "No token, or an unknown or revoked one (a disabled person's too).",
            403: "The caller's role (or topic, or groups) does not allow this.",
            404: "Nothing has this id (or name, or business key).",
            408: "The body did not arrive in time (OMS_API_BODY_TIMEOUT).",
            409: "It cannot apply as things stand; nothing was changed.",
            413: "The body is over OMS_MAX_PAYLOAD_BYTES (plus 64 KiB of envelope).",
            415: "The body is not JSON (or, where the route says so, YAML).",
            422: "A field is missing, malformed or refused.",
            503: "The database or the broker cannot be reached: try again later."}


@cache
def error_model(status: int) -> type[BaseModel]:
    """The body of an error of ``status``: ``error`` one of :func:`error_names`' (422: a form's ``fields`` too)."""
    kind: Any = Literal[error_names()[status]]
    base = FormErrorBody if status == 422 else ErrorBody
    return create_model(f"Error{status}", __base__=base, __doc__=f"An error answered with status {status}.",
                        error=(kind, Field(description=ErrorBody.model_fields["error"].description)))


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route for the error ``statuses`` it answers, each with its status's error model."""
    return {status: {"model": error_model(status), "description": MEANINGS[status]} for status in statuses}


class ApiError(Exception):
    """An error the API itself raises (no token, wrong role, too large): its status, type and sentence."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def sentence(text: str) -> str:
    """The first line of ``text``, whitespace folded: a detail is one sentence, never a traceback."""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return " ".join(lines[0].split()) if lines else ""


def body(status: int, error: str, detail: str, headers: dict[str, str] | None = None,
         **more: Any) -> JSONResponse:
    """The error's JSON response: ``error`` and ``detail``, and any ``more`` (a form's ``fields``)."""
    return JSONResponse({"error": error, "detail": sentence(detail) or error, **more}, status_code=status,
                        headers=headers)


def status_of(exc: BaseException) -> int | None:
    """The status the table gives ``exc``, or ``None`` when it is not one of the engine's expected errors."""
    return next((status for kind, status in STATUSES if isinstance(exc, kind)), None)


def _media_type(request: Request) -> str:
    """The request's media type, lower-case, without parameters ("" when none was sent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _validation(exc: RequestValidationError, request: Request) -> JSONResponse:
    errors: list[Any] = list(exc.errors())
    first = errors[0] if errors else {}
    media = _media_type(request)
    if (first.get("loc", ())[:1] == ("body",) and media and media != "application/json"
            and not media.endswith("+json") and request.headers.get("content-length", "0") != "0"):
        # FastAPI hands a body of another type (curl -d sends a form) to the model as bytes: say so
        return body(415, "UnsupportedMediaType", f"send the body as JSON with Content-Type: application/json, "
                    f"not {media}")
    if first.get("type") == "json_invalid":
        return body(400, "MalformedJson", f"the request body is not valid JSON: {first.get('msg', '')}")
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    return body(422, "InvalidRequest", f"{where}: {first.get('msg', 'invalid')}")


def install(app: FastAPI) -> None:
    """Register the handlers that give every error its JSON body."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return body(exc.status, exc.error, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation(exc, request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:  # Starlette names the methods of one route; a path may have one per method
            headers["Allow"] = ", ".join(allowed(app, request.url.path))
        return body(exc.status_code, NAMES.get(exc.status_code, "Error"), str(exc.detail), headers or None)

    async def _known(request: Request, exc: Exception) -> JSONResponse:
        status = status_of(exc)
        if status is not None:
            more = {"fields": exc.fields} if isinstance(exc, FormError) else {}
            return body(status, type(exc).__name__, str(exc), **more)
        if isinstance(exc, TRANSIENT):
            logger.warning("database unreachable during %s %s: %s", request.method, request.url.path,
                           type(exc).__name__)
            return body(503, "DatabaseUnavailable", "the database cannot be reached; try again later")
        if isinstance(exc, kombu.exceptions.OperationalError):
            return body(503, "BrokerUnavailable", "the broker cannot be reached; try again later")
        return await _unexpected(request, exc)

    # Handled here, not by the catch-all: Starlette re-raises what reaches ``Exception``'s handler.
    for kind in (oms_errors.OmsError, *TRANSIENT, kombu.exceptions.OperationalError):
        app.add_exception_handler(kind, _known)  # type: ignore[arg-type]

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected error during %s %s", request.method, request.url.path, exc_info=exc)
        return body(500, "InternalError", "the server failed to handle this request; see its log")
