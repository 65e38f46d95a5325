"""The API's path and query parameters and body fields, with their constraints as the engine checks them.

Each constraint is taken from the rule that enforces it (:data:`oms.model.names.NAME_PATTERN`,
:data:`oms.exceptions.ID_PATTERNS`, the states' enums, :mod:`oms.engine.checks`), so the
OpenAPI document cannot drift from it. The engine still does the checking, with its
own errors (422 ``InvalidArgument``, which callers and the README name): these types
describe the rule to generated clients rather than check it a second time.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BeforeValidator, Field, StrictFloat, StrictStr, WithJsonSchema

from ..durations import MAX_SECONDS
from ..engine.checks import KEY_PATTERN, MAX_KEY, MIN_POSITIVE_S
from ..exceptions import ID_PATTERNS
from ..model.names import MAX_NAME, MAX_WORKER_ID, NAME_PATTERN, WORKER_ID_PATTERN, reserved_pattern
from ..settings import OmsSettings
from ..states import InstanceStatus, Light

#: A name (workflow, calendar, step, signal): letters, digits, ``_ . -``, starting with a letter or digit.
#: (The string constraints carry no ``type``: a field's own type gives it, ``null`` too where it may be null.)
NAME: dict[str, Any] = {"pattern": f"^{NAME_PATTERN}$", "maxLength": MAX_NAME}
#: A name users may take: not the engine's (``oms``, ``oms.*``) nor Celery's, in any case.
FREE_NAME: dict[str, Any] = {**NAME, "not": {"pattern": reserved_pattern()}}
#: A caller's key (business key, idempotency key): no control character, not only spaces, 1 to 255 characters.
KEY: dict[str, Any] = {"pattern": KEY_PATTERN, "minLength": 1, "maxLength": MAX_KEY}
#: A worker id: printable text (no control characters) of 1 to 255 characters.
WORKER_ID: dict[str, Any] = {"pattern": f"^{WORKER_ID_PATTERN}$", "minLength": 1,
                             "maxLength": MAX_WORKER_ID}
#: A reason (a failure's, a pause's, a cancel's): text with something besides spaces in it, no NUL, at most
#: OMS_MAX_REASON_CHARS (its default here); nor a lone surrogate, here and below, which a pattern cannot name.
#: Typed: the fields are ``Any``, so that the engine names what is wrong.
REASON: dict[str, Any] = {"type": "string", "pattern": "^[^\\x00]*\\S[^\\x00]*$",
                          "minLength": 1, "maxLength": OmsSettings.model_fields["max_reason_chars"].default}
#: A duration: compact (``'10s'``, ``'1h30m'``), ISO 8601 (``'PT1M'``) or a number of seconds.
DURATION_TEXT = ("^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d|w))+$"
                 "|^[pP]([0-9]+[dD])?([tT]([0-9]+[hH])?([0-9]+[mM])?([0-9]+([.][0-9]+)?[sS])?)?$")


#: Text that can be stored: no NUL (a key's or a value's).
STORABLE = "^[^\\x00]*$"
#: Any JSON value whose strings (and keys) can be stored: what a payload, a result or a signal's data holds. Not
#: recursive (openapi-python-client cannot read a recursive schema and drops the operations that use one): the
#: pattern checks this value's own strings and keys, the description says the rule for those nested deeper.
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": "Any JSON value; no string (nor key), at any depth, holds a NUL.", "anyOf": [
    {"type": "null"}, {"type": "boolean"}, {"type": "number"}, {"type": "string", "pattern": STORABLE},
    {"type": "array", "items": {}},
    {"type": "object", "propertyNames": {"pattern": STORABLE}, "additionalProperties": True}]}
#: A JSON object of storable values (a payload, a result, a signal's data), at most OMS_MAX_PAYLOAD_BYTES of JSON
#: and OMS_MAX_PAYLOAD_DEPTH deep (those two are said in words: JSON Schema cannot count them).
JSON_OBJECT: dict[str, Any] = {"type": "object", "propertyNames": {"pattern": STORABLE},
                               "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}


def duration(most: float = MAX_SECONDS, *, positive: bool = False) -> dict[str, Any]:
    """A duration's schema: a number of seconds (from 0, or from a millisecond if ``positive``; up to ``most``) or
    text of :data:`DURATION_TEXT` (``positive``: not zero, i.e. some digit of it not 0). The bounds on text are said
    in words: a pattern cannot add up '1h30m'."""
    number: dict[str, Any] = {"type": "number", "minimum": MIN_POSITIVE_S if positive else 0, "maximum": most}
    text: dict[str, Any] = {"type": "string", "pattern": DURATION_TEXT}
    if positive:
        text["not"] = {"pattern": "^[0.a-zA-Z]*$"}
    return {"anyOf": [number, text]}


#: A duration in a body: text or a number, as JSON sends them (``true`` is not one second).
Duration = StrictStr | StrictFloat


def _id(kind: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{ID_PATTERNS[kind]}$"}


WorkflowId = Annotated[str, Path(json_schema_extra=NAME, description="A workflow's id.")]
CalendarId = Annotated[str, Path(json_schema_extra=NAME, description="A calendar's id.")]
Topic = Annotated[str, Path(json_schema_extra=FREE_NAME, description="A worker step's topic (its step id unless "
                                                                     "the definition names another).")]
SignalName = Annotated[str, Path(json_schema_extra=NAME, description="The signal a `wait_for` step waits for.")]
InstanceId = Annotated[str, Path(json_schema_extra=_id("instance"), description="`wf-` and 32 hex digits.")]
TaskId = Annotated[str, Path(json_schema_extra=_id("task"), description="`tk-` and 32 hex digits.")]

LightFilter = Annotated[str | None, Query(json_schema_extra={"enum": [str(x) for x in Light]},
                                          description="Only instances whose worst light is this.")]
StatusFilter = Annotated[str | None, Query(json_schema_extra={"enum": [str(x) for x in InstanceStatus]},
                                           description="Only instances with this status.")]
WorkflowFilter = Annotated[str | None, Query(json_schema_extra=NAME, description="Only this workflow's instances.")]
BusinessKeyFilter = Annotated[str | None, Query(json_schema_extra=KEY,
                                                description="Only the instances started with this business key.")]


def field(schema: dict[str, Any], description: str, default: Any = ...) -> Any:
    """A body field documented with ``schema`` (checked by the engine, which names what is wrong)."""
    return Field(default, description=description, json_schema_extra=schema)


#: A JSON object field (a payload, a result, a signal's data): typed loosely, so that the engine names what is wrong.
JsonObject = Annotated[dict[str, Any], WithJsonSchema(JSON_OBJECT)]
#: The same for a field the engine checks is an object itself (``payload``: 422 ``InvalidPayload`` otherwise;
#: ``null`` is ``{}``).
AnyJsonObject = Annotated[Any, WithJsonSchema({"anyOf": [JSON_OBJECT, {"type": "null"}]})]
#: A worker id the body may leave out (a person's token: she is the holder), but not send as ``null``.
OptionalWorkerId = Annotated[str | None, WithJsonSchema({"type": "string", **WORKER_ID})]


def _iso(value: Any) -> Any:
    """Refuse what pydantic would read as a Unix time (``0``): a moment is ISO 8601 text."""
    if isinstance(value, str) and not ISO_MOMENT.match(value):
        raise ValueError("expected an ISO 8601 date and time, e.g. 2026-12-01T00:00:00Z")
    return value


#: How an ISO 8601 moment begins (the rest is pydantic's to read).
ISO_MOMENT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: A moment in a query (``since``): ISO 8601, UTC unless it says otherwise.
Moment = Annotated[datetime, BeforeValidator(_iso)]
