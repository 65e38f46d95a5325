"""The OpenAPI document (``/openapi.json``, ``/docs``): FastAPI's, completed with what every route shares.

The routes document what is theirs (their models, their 404s and 409s); this adds
what follows from the rules the API applies to every route, so no route can forget
it: a route :data:`~oms.api.auth.RULES` names answers 401, 403 and 503; one with
parameters or a body answers 422; one with a body 400, 408, 413 and 415. Each
error status's body is its own schema, whose ``error`` is an enum of the names that
status can carry (:func:`~oms.api.errors.error_names`). The links (start → get →
fetch → complete) tell generated clients and schemathesis how the calls chain.
``info.version`` is the package's version; the API's version is its path, ``/v1``.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from .auth import PUBLIC
from .errors import MEANINGS, error_model
from .params import JSON_VALUE_SCHEMA
from .routing import routes

#: The package whose version the document carries.
PACKAGE = "hms-oms"
DESCRIPTION = """\
The HTTP API of HMS-OMS, version 1: every path of it begins with `/v1` (a change that would break a client gets a
new prefix). Send `Authorization: Bearer <token>` (`oms token create --role ...`); bodies are JSON.

Every error is `{"error": <name>, "detail": <one sentence>}` (a form's 422 adds `fields`); each status's schema
lists the names it can carry. The engine checks ids, names, durations and payloads itself and answers 422
`InvalidArgument` (or `InvalidPayload`) naming what is wrong: the constraints shown here are those checks.
"""
#: How the calls chain: (operation, status) -> its links, each to an operation with values from the response. The
#: worker's loop, start -> get -> fetch -> complete (or fail, extend), is the chain; few branches, so that
#: schemathesis's stateful runs follow it to its end.
LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("start_instance", "201"): {
        "GetInstance": {"operationId": "get_instance", "parameters": {"instance_id": "$response.body#/instance_id"},
                        "description": "The instance just started."},
    },
    ("list_instances", "200"): {
        "GetListedInstance": {"operationId": "get_instance",
                              "parameters": {"instance_id": "$response.body#/instances/0/id"}},
        "RetryListedInstance": {"operationId": "retry_instance",
                                "parameters": {"instance_id": "$response.body#/instances/0/id"}},
    },
    ("get_instance", "200"): {
        "FetchTask": {"operationId": "fetch_task", "parameters": {"topic": "$response.body#/tasks/0/topic"},
                      "description": "Fetch the instance's first step from its topic."},
    },
    ("fetch_task", "200"): {
        **{name: {"operationId": operation, "parameters": {"task_id": "$response.body#/id"},
                  "requestBody": body, "description": "Work on the task fetched, as its holder."}
           for name, operation, body in (
               ("CompleteTask", "complete_task", {"worker_id": "$response.body#/worker_id", "result": {}}),
               ("FailTask", "fail_task", {"worker_id": "$response.body#/worker_id", "reason": "failed"}),
               ("ExtendTask", "extend_task", {"worker_id": "$response.body#/worker_id", "lease": "5m"}))},
    },
}


def _statuses(route: APIRoute, operation: dict[str, Any]) -> set[int]:
    """The error statuses ``route`` answers by the rules every route shares, and those it declares."""
    found = {int(status) for status in operation.get("responses", {}) if str(status)[0] in "45"}
    ruled = any((method, route.path) not in PUBLIC for method in route.methods or ())
    if ruled:
        found |= {401, 403, 503}
    if operation.get("parameters") or "requestBody" in operation:
        found.add(422)
    if "requestBody" in operation:
        found |= {400, 408, 413, 415}
    return found


def _error_response(status: int) -> dict[str, Any]:
    return {"description": MEANINGS[status],
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/Error{status}"}}}}


def complete(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (FastAPI's) with every route's error statuses, the error schemas, the links."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    used: set[int] = set()
    for route in routes(app):
        if not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = document["paths"][route.path_format][method.lower()]
            for media in operation.get("requestBody", {}).get("content", {}).values():
                schemas.update(media.get("schema", {}).pop("$defs", {}))  # a saved model's parts
            responses = operation.setdefault("responses", {})
            for status in sorted(_statuses(route, operation)):
                responses[str(status)] = _error_response(status)
                used.add(status)
            for (operation_id, answered), links in LINKS.items():
                if operation_id == operation.get("operationId") and answered in responses:
                    responses[answered]["links"] = links
    for status in sorted(used):
        schema = error_model(status).model_json_schema(ref_template="#/components/schemas/{model}")
        schemas[f"Error{status}"] = schema
    schemas["JsonValue"] = JSON_VALUE_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError", "ErrorBody", "FormErrorBody"):
        schemas.pop(unused, None)
    return document


#: The order /docs shows the routes' tags in (a newcomer's order; the routers' is the order requests are matched in).
TAGS = ("workflows", "calendars", "instances", "pull workers", "people", "signals", "page", "reads", "notices",
        "operations")


def install(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=version(PACKAGE), summary=app.summary,
                                   description=DESCRIPTION, routes=app.routes,
                                   tags=[{"name": tag} for tag in TAGS])
            app.openapi_schema = complete(app, document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
