"""The /v1 contract changes only on purpose: a copy of its operations, and a test that fails when one breaks.

``openapi_operations.json`` holds, per ``METHOD path``, its parameters (name, where, required; a JSON body's
top-level fields as ``body``) and the statuses it answers. The test fails when an operation, a parameter or a
status disappears, or a parameter becomes required (or a required one appears): what would break a client
generated from the document. Additions pass. To change the contract deliberately, refresh the copy and commit it:

    OMS_UPDATE_OPENAPI_SNAPSHOT=1 .venv/bin/python -m pytest tests/unit/test_openapi_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from oms.api import create_app

SNAPSHOT = Path(__file__).with_name("openapi_operations.json")
#: Set to refresh :data:`SNAPSHOT` from the code (then review the diff, and commit it).
UPDATE = "OMS_UPDATE_OPENAPI_SNAPSHOT"


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A body's object schema: its ``$ref`` followed, its ``null`` alternative left out."""
    for choice in schema.get("anyOf", []):
        if choice.get("type") != "null":
            return _resolve(document, choice)
    if "$ref" in schema:
        return _resolve(document, document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    return schema


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each /v1 operation (and the probes and metrics) of ``document``: its parameters and statuses."""
    found: dict[str, dict[str, Any]] = {}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            parameters = [[p["name"], p["in"], bool(p.get("required"))] for p in operation.get("parameters", [])]
            body = operation.get("requestBody", {})
            schema = _resolve(document, body.get("content", {}).get("application/json", {}).get("schema", {}))
            required = set(schema.get("required", [])) if body.get("required") else set()
            parameters += [[name, "body", name in required] for name in schema.get("properties", {})]
            found[f"{method.upper()} {path}"] = {"operationId": operation["operationId"],
                                                 "parameters": sorted(parameters),
                                                 "statuses": sorted(operation["responses"])}
    return dict(sorted(found.items()))


def breaks(saved: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]]) -> list[str]:
    """What in ``now`` would break a client generated from ``saved``."""
    found = []
    for key, before in saved.items():
        after = now.get(key)
        if after is None:
            found.append(f"{key}: the operation is gone")
            continue
        if after["operationId"] != before["operationId"]:
            found.append(f"{key}: operationId {before['operationId']} is now {after['operationId']}")
        was = {(name, where): required for name, where, required in before["parameters"]}
        is_ = {(name, where): required for name, where, required in after["parameters"]}
        for (name, where), required in was.items():
            if (name, where) not in is_:
                found.append(f"{key}: parameter {name} ({where}) is gone")
            elif is_[(name, where)] and not required:
                found.append(f"{key}: parameter {name} ({where}) is now required")
        found += [f"{key}: parameter {name} ({where}) is new and required"
                  for (name, where), required in is_.items() if required and (name, where) not in was]
        found += [f"{key}: status {status} is gone" for status in before["statuses"]
                  if status not in after["statuses"]]
    return found


def test_no_operation_parameter_or_status_of_the_contract_disappears() -> None:
    now = operations(create_app().openapi())
    if os.environ.get(UPDATE):
        lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in now.items()]  # one per line
        SNAPSHOT.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    saved = json.loads(SNAPSHOT.read_text())
    assert not breaks(saved, now), (
        "the API would break clients generated from its document:\n" + "\n".join(breaks(saved, now))
        + f"\nIf that is deliberate, refresh {SNAPSHOT.name}: {UPDATE}=1 pytest {Path(__file__).name}")


def test_the_snapshot_check_sees_what_breaks_and_lets_additions_pass() -> None:
    saved = {"POST /v1/x": {"operationId": "x", "parameters": [["a", "query", False], ["w", "body", True]],
                            "statuses": ["200", "404"]}}
    grown = {"POST /v1/x": {"operationId": "x", "parameters": [["a", "query", False], ["b", "query", False],
                                                               ["w", "body", True]],
                            "statuses": ["200", "404", "409"]}, "GET /v1/y": {"operationId": "y", "parameters": [],
                                                                               "statuses": ["200"]}}
    assert breaks(saved, grown) == []
    shrunk = {"POST /v1/x": {"operationId": "x", "parameters": [["a", "query", True], ["c", "body", True]],
                             "statuses": ["200"]}}
    assert breaks(saved, shrunk) == [
        "POST /v1/x: parameter a (query) is now required", "POST /v1/x: parameter w (body) is gone",
        "POST /v1/x: parameter c (body) is new and required", "POST /v1/x: status 404 is gone"]
    assert breaks(saved, {}) == ["POST /v1/x: the operation is gone"]


@pytest.mark.parametrize("key", ["POST /v1/topics/{topic}/fetch", "POST /v1/tasks/{task_id}/complete"])
def test_the_snapshot_holds_the_workers_loop(key: str) -> None:
    assert key in json.loads(SNAPSHOT.read_text())
