"""Definitions over HTTP: save one (JSON or YAML), list them, read one version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from ..catalog import Workflow
from ..exceptions import InvalidDefinition
from ..model.definitions import check_workflow_id
from ..model.files import parse_definition
from ..reads import WorkflowSummary, list_workflows
from ..store.catalog import load_definition
from ..store.db import transaction
from .errors import ApiError

router = APIRouter(prefix="/v1", tags=["workflows"])
#: Media types read as YAML; anything else must be JSON.
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
_DEFINITION_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "example": {"steps": [{"id": "collect_form", "sla": "5m"}]}}},
    "application/yaml": {"schema": {"type": "string"}},
}}}


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


@router.put("/workflows/{workflow_id}", openapi_extra=_DEFINITION_BODY)
async def put_workflow(workflow_id: str, request: Request) -> dict[str, int]:
    """Save a definition (JSON, or YAML with ``Content-Type: application/yaml``); an unchanged one keeps its
    version. Returns ``{"version": n}``."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    return {"version": await run_in_threadpool(_save, workflow_id, await request.body(), media)}


@router.get("/workflows")
def get_workflows() -> list[WorkflowSummary]:
    """Every saved workflow at its latest version, with its instances by status."""
    return list_workflows()


def _load(workflow_id: str, version: int | None) -> dict[str, Any]:
    check_workflow_id(workflow_id)
    with transaction() as session:
        definition, found = load_definition(session, workflow_id, version)
    return {"id": workflow_id, "version": found, "definition": definition.spec()}


@router.get("/workflows/{workflow_id}")
def get_workflow(workflow_id: str,
                 version: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
    """A definition, its latest version unless ``version`` is given."""
    return _load(workflow_id, version)
