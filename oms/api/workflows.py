"""Definitions over HTTP: save one (JSON or YAML), list them, read one version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..catalog import Workflow
from ..exceptions import InvalidDefinition
from ..model.definitions import Definition, check_workflow_id
from ..model.files import parse_definition
from ..reads import WorkflowSummary, list_workflows
from ..store.catalog import load_definition
from ..store.db import transaction
from .answers import Saved, WorkflowVersion
from .errors import ApiError, documented
from .params import WorkflowId

router = APIRouter(prefix="/v1", tags=["workflows"])
#: Media types read as YAML; anything else must be JSON.
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def definition_body(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` of a route that saves a ``model`` (as JSON, or the same as YAML text): its ``id`` may be
    left out (it is the path's). Its ``$defs`` go to the document's components (:mod:`oms.api.contract`)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema["required"] = [name for name in schema.get("required", []) if name != "id"]
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {**schema, "example": example}},
        "application/yaml": {"schema": {"type": "string"}},
    }}}


_DEFINITION_BODY = definition_body(Definition, {"steps": [{"id": "collect_form", "sla": "5m"}]})
#: What saving a definition may answer besides its success (a definition it refuses: 422 ``InvalidDefinition``).
SAVING = documented(400, 408, 413, 415)


def read_body(raw: bytes, media: str) -> dict[str, Any]:
    """A definition sent as JSON or YAML (by its media type), read as strictly as a file."""
    if media not in (*YAML_TYPES, "application/json"):
        raise ApiError(415, "UnsupportedMediaType", f"send the definition as application/json or application/yaml, "
                       f"not {media}")
    return parse_definition(raw, "yaml" if media in YAML_TYPES else "json", "the request body")


def body_for(path_id: str, raw: bytes, media: str, what: str) -> dict[str, Any]:
    """A definition read from the body (see :func:`read_body`), its ``id`` the path's, given or not."""
    data = read_body(raw, media)
    given = data.setdefault("id", path_id)
    if given != path_id:
        raise InvalidDefinition(f"the {what}'s id {given!r} is not the id in the path, {path_id!r}")
    return data


def _save(workflow_id: str, raw: bytes, media: str) -> int:
    check_workflow_id(workflow_id)
    return Workflow(**body_for(workflow_id, raw, media, "definition")).save()


@router.put("/workflows/{workflow_id}", openapi_extra=_DEFINITION_BODY, responses=SAVING)
async def put_workflow(workflow_id: WorkflowId, request: Request) -> Saved:
    """Save a definition (JSON, or YAML with ``Content-Type: application/yaml``); an unchanged one keeps its
    version. Returns ``{"version": n}``. Its ``id``, if given, is the path's. Beyond its schema, 422
    ``InvalidDefinition`` names what a definition breaks: step ids repeated, ``after`` naming no step, a cycle,
    durations out of range, an unknown calendar's time zone…"""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    return Saved(version=await run_in_threadpool(_save, workflow_id, await request.body(), media))


@router.get("/workflows")
def get_workflows() -> list[WorkflowSummary]:
    """Every saved workflow at its latest version, with its instances by status."""
    return list_workflows()


def _load(workflow_id: str, version: int | None) -> WorkflowVersion:
    check_workflow_id(workflow_id)
    with transaction() as session:
        definition, found = load_definition(session, workflow_id, version)
    return WorkflowVersion(id=workflow_id, version=found, definition=definition.spec())


@router.get("/workflows/{workflow_id}", responses=documented(404))
def get_workflow(workflow_id: WorkflowId,
                 version: Annotated[int | None, Query(ge=1)] = None) -> WorkflowVersion:
    """A definition, its latest version unless ``version`` is given."""
    return _load(workflow_id, version)
