"""People in the loop against a real ``oms api`` on PostgreSQL and Redis: a person claims and completes her step, a
portal's signal by business key moves an instance on, and disabling a person stops her token in the running API."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

import oms
from oms.store import tokens

from ..conftest import Backend
from ..unit.test_people import INSPECTION, PORTAL
from .test_api_server import ApiProcess, api_env, forgotten_at_once

pytestmark = pytest.mark.integration


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def keys(postgres_backend: Backend) -> dict[str, dict[str, str]]:
    """Tokens: an admin's, a portal's (signaller), two inspectors' of their own."""
    oms.Workflow(**INSPECTION).save()  # type: ignore[arg-type]
    oms.Workflow(**PORTAL).save()  # type: ignore[arg-type]
    return {"admin": _bearer(tokens.create("admin", name="ops")[0]),
            "portal": _bearer(tokens.create("signaller", name="portal")[0]),
            "alice": _bearer(oms.create_user("alice", ["inspectors"])[0]),
            "bob": _bearer(oms.create_user("bob", ["inspectors"])[0])}


@pytest.fixture
def api(postgres_backend: Backend, keys: dict[str, dict[str, str]], tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess(postgres_backend, tmp_path)
    yield process
    process.stop()


def _start(api: ApiProcess, keys: dict[str, dict[str, str]], workflow: str, key: str) -> str:
    started = httpx.post(f"{api.url}/v1/workflows/{workflow}/instances", headers=keys["admin"],
                         json={"payload": {"facility": "Acme"}, "business_key": key})
    assert started.status_code == 201, started.text
    return str(started.json()["instance_id"])


def test_a_person_claims_and_completes_and_a_portal_signals_by_business_key(api: ApiProcess,
                                                                           keys: dict[str, dict[str, str]]) -> None:
    inspection = _start(api, keys, "inspection", "F8700-12-42")
    [item] = httpx.get(f"{api.url}/v1/inbox", headers=keys["alice"]).json()["items"]
    assert (item["instance_id"], item["business_key"], item["actionable"]) == (inspection, "F8700-12-42", True)
    task = item["task_id"]
    claimed = httpx.post(f"{api.url}/v1/tasks/{task}/claim", headers=keys["alice"])
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "alice"
    assert httpx.post(f"{api.url}/v1/tasks/{task}/claim", headers=keys["bob"]).json()["error"] == "TaskClaimed"
    refused = httpx.post(f"{api.url}/v1/tasks/{task}/complete", json={"result": {}}, headers=keys["alice"])
    assert refused.status_code == 422 and refused.json()["fields"] == {
        "inspector": "'inspector' is a required property"}
    done = httpx.post(f"{api.url}/v1/tasks/{task}/complete", json={"result": {"inspector": "alice"}},
                      headers=keys["alice"])
    assert done.json() == {"status": "done", "repeat": False}
    info = oms.get_instance(inspection)
    assert info.results["assign_inspector"] == {"inspector": "alice"} and info.current_step == "report"

    portal = _start(api, keys, "portal", "F8700-12-42")  # another workflow: the same key is free there
    body = {"business_key": "F8700-12-42", "data": {"epa_id": "TXD0001"}, "idempotency_key": "portal-req-1"}
    signalled = httpx.post(f"{api.url}/v1/workflows/portal/signals/form_submitted", json=body, headers=keys["portal"])
    assert signalled.status_code == 202 and signalled.json()["instance_id"] == portal
    again = httpx.post(f"{api.url}/v1/workflows/portal/signals/form_submitted", json=body, headers=keys["portal"])
    assert again.status_code == 200 and again.json() == {**signalled.json(), "new": False}
    moved = oms.get_instance(portal)
    assert moved.current_step == "validate_tax_id" and moved.results["collect_form"] == {"epa_id": "TXD0001"}
    assert httpx.get(f"{api.url}/v1/instances/{portal}", headers=keys["portal"]).status_code == 403
    listed = httpx.get(f"{api.url}/v1/instances?business_key=F8700-12-42", headers=keys["admin"]).json()
    assert {i["id"] for i in listed["instances"]} == {inspection, portal}


def test_disabling_a_person_stops_her_token_in_the_running_api(api: ApiProcess, keys: dict[str, dict[str, str]],
                                                               tmp_path: Path) -> None:
    _start(api, keys, "inspection", "F1")
    [item] = httpx.get(f"{api.url}/v1/inbox", headers=keys["alice"]).json()["items"]
    assert httpx.post(f"{api.url}/v1/tasks/{item['task_id']}/claim", headers=keys["alice"]).status_code == 200
    assert httpx.get(f"{api.url}/v1/inbox", headers=keys["alice"]).status_code == 200  # her token is cached now
    disabled = subprocess.run([sys.executable, "-m", "oms.cli", "user", "disable", "alice"], cwd=tmp_path,
                              env={**os.environ, **api_env(api)}, capture_output=True, text=True, check=True)
    assert "1 claimed step(s) went back" in disabled.stdout
    refused = httpx.get(f"{api.url}/v1/inbox", headers=keys["alice"])
    assert refused.status_code == 401 and refused.json()["error"] == "Unauthorized"
    [back] = httpx.get(f"{api.url}/v1/inbox", headers=keys["bob"]).json()["items"]
    assert (back["task_id"], back["claimed_by"]) == (item["task_id"], None)


def test_cached_person_tokens_are_forgotten_the_moment_she_is_disabled(postgres_backend: Backend) -> None:
    from oms.api.auth import Principal, lookup

    secret, _ = oms.create_user("alice", ["inspectors"], role="supervisor")
    assert lookup(secret) == Principal("alice", "supervisor", None, ("inspectors",))
    forgotten_at_once(postgres_backend.database_url, secret, lambda: oms.disable_user("alice"))
