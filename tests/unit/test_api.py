"""The HTTP API in-process (FastAPI's TestClient, SQLite): who may call what, the error table, idempotency, paging.

``tests/integration/test_api_server.py`` runs a real ``oms api`` process on
PostgreSQL and Redis: long polls, disconnects, the shell worker, access logs.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import oms
from oms.api import auth, create_app, routing
from oms.api.app import served
from oms.api.auth import CSRF_COOKIE, CSRF_HEADER, TOKEN_COOKIE
from oms.store import tokens

from ..conftest import EPA, Backend

ROLES = ("admin", "starter", "reader", "worker")
READERS = {"admin", "starter", "reader"}
WORKERS = {"admin", "worker"}
OFFICE = {"timezone": "America/New_York", "hours": {"mon-fri": "08:30-17:00"}, "holidays": "US"}
#: The worker token's only topic.
TOPIC = "collect_form"


@pytest.fixture
def keys(backend: Backend) -> dict[str, dict[str, str]]:
    """An ``Authorization`` header per role (the worker's token takes ``collect_form`` only)."""
    made = {}
    for role in ROLES:
        secret, _ = tokens.create(role, name=f"t-{role}", topics=[TOPIC] if role == "worker" else None)
        made[role] = {"Authorization": f"Bearer {secret}"}
    return made


@pytest.fixture
def client(keys: dict[str, dict[str, str]]) -> Iterator[TestClient]:
    with TestClient(create_app()) as found:
        yield found


@pytest.fixture
def epa(client: TestClient, keys: dict[str, dict[str, str]]) -> str:
    """The EPA workflow saved and one instance started; its id."""
    assert client.put("/v1/workflows/epa_waste_reg", json=EPA, headers=keys["admin"]).json() == {"version": 1}
    response = client.post("/v1/workflows/epa_waste_reg/instances", json={"payload": {"form_id": "F1"}},
                           headers=keys["admin"])
    assert response.status_code == 201
    return str(response.json()["instance_id"])


def _fetch(client: TestClient, headers: dict[str, str], topic: str = TOPIC, **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/topics/{topic}/fetch", json={"max_wait": "2s", **body}, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _endpoints(instance_id: str, task_id: str) -> list[tuple[str, str, Any, set[str]]]:
    """Every route: method, path, JSON body, the roles that may call it."""
    return [
        ("PUT", "/v1/workflows/epa_waste_reg", EPA, {"admin"}),
        ("GET", "/v1/workflows", None, READERS),
        ("GET", "/v1/workflows/epa_waste_reg?version=1", None, READERS),
        ("POST", "/v1/workflows/epa_waste_reg/instances", {"payload": {}}, {"admin", "starter"}),
        ("GET", "/v1/instances?workflow=epa_waste_reg&status=running&light=green", None, READERS),
        ("GET", f"/v1/instances/{instance_id}", None, READERS),
        ("GET", f"/v1/instances/{instance_id}/history", None, READERS),
        ("GET", "/v1/overdue", None, READERS),
        ("GET", "/v1/sla/summary", None, READERS),
        ("GET", "/v1/sla/report?since=2026-11-01&until=2026-12-01", None, READERS),
        ("GET", "/metrics", None, {"admin", "reader"}),
        ("POST", f"/v1/topics/{TOPIC}/fetch", {"max_wait": 0}, WORKERS),
        ("POST", f"/v1/topics/{TOPIC}/fetch-batch", {"max_wait": 0, "max_tasks": 5}, WORKERS),
        ("POST", f"/v1/tasks/{task_id}/extend", {"lease": "5m", "worker_id": "w1"}, WORKERS),
        ("POST", f"/v1/tasks/{task_id}/fail", {"reason": "no", "worker_id": "someone-else"}, WORKERS),
        ("POST", f"/v1/tasks/{task_id}/complete", {"worker_id": "w1"}, WORKERS),
        ("POST", f"/v1/tasks/{task_id}/pause", {"reason": "waiting", "worker_id": "w1"}, WORKERS),
        ("POST", f"/v1/tasks/{task_id}/resume", None, {"admin", "starter", "worker"}),
        ("PUT", "/v1/calendars/office", OFFICE, {"admin"}),
        ("GET", "/v1/calendars", None, READERS),
        ("GET", "/v1/calendars/office", None, READERS),
        ("POST", f"/v1/instances/{instance_id}/retry", None, {"admin"}),
        ("POST", f"/v1/instances/{instance_id}/cancel", {"reason": "test"}, {"admin"}),
        ("GET", "/v1/notices?status=failed", None, {"admin", "reader"}),
        ("GET", "/v1/channels", None, {"admin", "reader"}),
        ("POST", "/v1/channels", {"name": "director-mail", "email": "director@agency.gov"}, {"admin"}),
    ]


def test_every_endpoint_refuses_no_token_and_wrong_roles_and_serves_the_right_ones(
        client: TestClient, keys: dict[str, dict[str, str]], epa: str) -> None:
    task = _fetch(client, keys["worker"], worker_id="w1")
    for method, path, body, allowed in _endpoints(epa, task["id"]):
        anonymous = client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.json()["error"] == "Unauthorized"
        for role in ROLES:
            response = client.request(method, path, json=body, headers=keys[role])
            if role in allowed:
                assert response.status_code not in (401, 403, 422, 500), (role, method, path, response.text)
            else:
                assert response.status_code == 403, (role, method, path, response.text)
                assert response.json()["error"] == "Forbidden"
    # the right roles did what they asked: the task was completed by its holder, the instance cancelled
    assert client.get(f"/v1/instances/{epa}", headers=keys["reader"]).json()["status"] == "cancelled"
    kinds = [e["kind"] for e in client.get(f"/v1/instances/{epa}/history", headers=keys["reader"]).json()]
    assert kinds.count("task.done") == 1 and "workflow.cancelled" in kinds


def test_a_worker_token_works_on_its_topics_only(client: TestClient, keys: dict[str, dict[str, str]],
                                                 epa: str) -> None:
    done = _fetch(client, keys["admin"], worker_id="adm")
    assert client.post(f"/v1/tasks/{done['id']}/complete", json={"worker_id": "adm"},
                       headers=keys["admin"]).status_code == 200
    other = _fetch(client, keys["admin"], topic="validate_tax_id", worker_id="adm")  # a task of another topic
    refused = client.post("/v1/topics/validate_tax_id/fetch", json={"max_wait": 0}, headers=keys["worker"])
    assert refused.status_code == 403 and "validate_tax_id" in refused.json()["detail"]
    for action, body in (("complete", {}), ("fail", {"reason": "x"}), ("extend", {"lease": "1m"})):
        response = client.post(f"/v1/tasks/{other['id']}/{action}", json={**body, "worker_id": "adm"},
                               headers=keys["worker"])
        assert response.status_code == 403, (action, response.text)
    assert client.get(f"/v1/instances/{epa}", headers=keys["admin"]).json()["tasks"][1]["status"] == "running"


def test_a_revoked_token_stops_at_once(client: TestClient, epa: str) -> None:
    secret, _ = tokens.create("reader", name="soon-gone")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/v1/instances", headers=headers).status_code == 200
    tokens.revoke("soon-gone")
    refused = client.get("/v1/instances", headers=headers)
    assert refused.status_code == 401 and refused.json() == {"error": "Unauthorized",
                                                             "detail": "unknown or revoked token"}
    assert refused.headers["www-authenticate"] == "Bearer"


def test_tokens_are_stored_hashed_and_listed_without_secrets(backend: Backend) -> None:
    secret, info = tokens.create("worker", name="irs", topics=["b", "a"])
    assert info.topics == frozenset({"a", "b"}) and len(secret) >= 40
    from oms.store.db import transaction
    from oms.store.tables import TokenRow

    with transaction() as session:
        row = session.get_one(TokenRow, "irs")
        assert row.token_hash == tokens.digest(secret) and secret not in repr(row.__dict__)
    assert tokens.find(secret) == info and tokens.find(secret + "x") is None
    with pytest.raises(oms.exceptions.InvalidArgument, match="exists"):
        tokens.create("admin", name="irs")
    with pytest.raises(oms.exceptions.InvalidArgument, match="needs its topics"):
        tokens.create("worker")
    tokens.revoke("irs")
    assert tokens.find(secret) is None and not tokens.any_live()  # the only one
    again, _ = tokens.create("admin", name="irs")  # a revoked name may be used again
    assert tokens.find(again) is not None and tokens.find(secret) is None


def test_the_page_cookie_needs_the_csrf_header_for_unsafe_methods(client: TestClient, epa: str) -> None:
    secret, _ = tokens.create("admin", name="page")
    client.cookies.set(TOKEN_COOKIE, secret)
    client.cookies.set(CSRF_COOKIE, "c" * 32)
    assert client.get(f"/v1/instances/{epa}").status_code == 200  # a read needs the cookie only
    refused = client.post(f"/v1/instances/{epa}/cancel", json={})
    assert refused.status_code == 403 and refused.json()["error"] == "CsrfFailed"
    wrong = client.post(f"/v1/instances/{epa}/cancel", json={}, headers={CSRF_HEADER: "d" * 32})
    assert wrong.status_code == 403
    assert client.post(f"/v1/instances/{epa}/cancel", json={}, headers={CSRF_HEADER: "c" * 32}).status_code == 200


def test_insecure_no_auth_makes_every_caller_an_admin(backend: Backend) -> None:
    with TestClient(create_app(insecure_no_auth=True)) as client:
        assert client.put("/v1/workflows/epa_waste_reg", json=EPA).json() == {"version": 1}


def test_the_api_refuses_to_start_without_a_token(backend: Backend) -> None:
    with pytest.raises(Exception, match="no API token exists"):
        with TestClient(create_app()):
            pass


def _error(response: Any, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    found = response.json()
    assert set(found) == {"error", "detail"} and found["error"] == error, found
    assert "Traceback" not in found["detail"] and "\n" not in found["detail"]
    return str(found["detail"])


def test_errors_map_to_statuses_with_one_sentence(client: TestClient, keys: dict[str, dict[str, str]],
                                                  epa: str) -> None:
    admin = keys["admin"]
    _error(client.post("/v1/workflows/epa_waste_reg/instances", content=b'{"payload": ', headers={
        **admin, "content-type": "application/json"}), 400, "MalformedJson")
    _error(client.post("/v1/workflows/epa_waste_reg/instances", content=b'{"payload": {"a": "\xff"}}', headers={
        **admin, "content-type": "application/json"}), 400, "MalformedJson")  # not UTF-8
    _error(client.post("/v1/workflows/epa_waste_reg/instances", content=b'{"payload": {}}', headers={
        **admin, "content-type": "application/x-www-form-urlencoded"}), 415, "UnsupportedMediaType")  # curl -d
    _error(client.post("/v1/workflows/epa_waste_reg/instances", json={"form_id": "F1"}, headers=admin),
           422, "InvalidRequest")  # the payload without its "payload" key: refused, not started with {}
    _error(client.post(f"/v1/topics/{TOPIC}/fetch", json={"maxWait": "1s"}, headers=admin), 422, "InvalidRequest")
    _error(client.post("/v1/workflows/epa_waste_reg/instances", json={"payload": [1]}, headers=admin),
           422, "InvalidPayload")
    _error(client.post("/v1/workflows/epa_waste_reg/instances", json={"payload": {"a": "\x00"}}, headers=admin),
           422, "InvalidPayload")
    _error(client.post("/v1/workflows/nope/instances", json={}, headers=admin), 404, "UnknownWorkflow")
    _error(client.get("/v1/workflows/epa_waste_reg?version=9", headers=admin), 404, "UnknownWorkflow")
    _error(client.get("/v1/instances/wf-" + "0" * 32, headers=admin), 404, "UnknownInstance")
    _error(client.get("/v1/instances/not-an-id", headers=admin), 422, "InvalidArgument")
    _error(client.get("/v1/instances?light=purple", headers=admin), 422, "InvalidArgument")
    _error(client.get("/v1/instances?cursor=zzz", headers=admin), 422, "InvalidArgument")
    _error(client.get("/v1/instances?limit=0", headers=admin), 422, "InvalidRequest")
    _error(client.post("/v1/tasks/tk-" + "0" * 32 + "/complete", json={"worker_id": "w"}, headers=admin),
           404, "TaskNotFound")
    _error(client.post("/v1/tasks/tk-" + "0" * 32 + "/complete", json={}, headers=admin), 422, "InvalidRequest")
    _error(client.put("/v1/workflows/x", json={"steps": []}, headers=admin), 422, "InvalidDefinition")
    _error(client.put("/v1/workflows/x", json={"id": "y", "steps": [{"id": "a", "sla": "1m"}]}, headers=admin),
           422, "InvalidDefinition")
    _error(client.put("/v1/workflows/x", content=b"steps: [", headers={**admin, "content-type": "application/yaml"}),
           422, "InvalidDefinition")
    _error(client.put("/v1/workflows/x", content=b"<x/>", headers={**admin, "content-type": "text/xml"}),
           415, "UnsupportedMediaType")
    _error(client.post(f"/v1/topics/{TOPIC}/fetch", json={"max_wait": "1h"}, headers=admin), 422, "InvalidArgument")
    _error(client.post("/v1/topics/oms/fetch", json={"max_wait": 0}, headers=admin), 422, "InvalidArgument")
    _error(client.get("/v1/nothing-here", headers=admin), 404, "NotFound")
    # conflicts: lease lost, finished twice, the instance ended, another holder
    task = _fetch(client, admin, worker_id="w1", lease=0.05)
    time.sleep(0.1)
    _error(client.post(f"/v1/tasks/{task['id']}/complete", json={"worker_id": "w1"}, headers=admin), 409, "LeaseLost")
    task = _fetch(client, admin, worker_id="w1")
    _error(client.post(f"/v1/tasks/{task['id']}/extend", json={"worker_id": "w2"}, headers=admin),
           409, "NotLeaseHolder")
    done = client.post(f"/v1/tasks/{task['id']}/complete", json={"worker_id": "w1"}, headers=admin)
    assert done.json() == {"status": "done", "repeat": False}
    again = client.post(f"/v1/tasks/{task['id']}/complete", json={"worker_id": "w1"}, headers=admin)
    assert (again.status_code, again.json()) == (200, {"status": "done", "repeat": True})  # the holder's repeat
    _error(client.post(f"/v1/tasks/{task['id']}/complete", json={"worker_id": "w2"}, headers=admin),
           409, "TaskAlreadyFinished")
    task = _fetch(client, admin, topic="validate_tax_id", worker_id="w1")
    assert client.post(f"/v1/instances/{epa}/cancel", headers=admin).status_code == 200
    _error(client.post(f"/v1/tasks/{task['id']}/fail", json={"reason": "x", "worker_id": "w1"}, headers=admin),
           409, "InstanceFinished")


def test_too_large_is_413(client: TestClient, keys: dict[str, dict[str, str]], epa: str) -> None:
    oms.configure(database_url=oms.settings.get_settings().database_url, broker_url="filesystem://",
                  home=oms.settings.get_settings().home, max_payload_bytes=1000)
    admin = keys["admin"]
    _error(client.post("/v1/workflows/epa_waste_reg/instances", json={"payload": {"a": "x" * 2000}}, headers=admin),
           413, "PayloadTooLarge")
    _error(client.post("/v1/workflows/epa_waste_reg/instances", content=b" " * 200_000,
                       headers={**admin, "content-type": "application/json"}), 413, "PayloadTooLarge")


def test_idempotency_key_returns_the_first_instance_and_refuses_another_payload(
        client: TestClient, keys: dict[str, dict[str, str]], epa: str) -> None:
    starter = {**keys["starter"], "Idempotency-Key": "portal-42"}
    first = client.post("/v1/workflows/epa_waste_reg/instances", json={"payload": {"form_id": "F2"}}, headers=starter)
    again = client.post("/v1/workflows/epa_waste_reg/instances", json={"payload": {"form_id": "F2"}}, headers=starter)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    detail = _error(client.post("/v1/workflows/epa_waste_reg/instances", json={"payload": {"form_id": "F3"}},
                                headers=starter), 409, "IdempotencyConflict")
    assert first.json()["instance_id"] in detail
    listed = client.get("/v1/instances?workflow=epa_waste_reg", headers=keys["reader"]).json()["instances"]
    assert len(listed) == 2  # the fixture's instance and this one


def test_the_list_leaves_escalations_out_when_asked(client: TestClient, keys: dict[str, dict[str, str]],
                                                    epa: str) -> None:
    oms.scan_sla(datetime.now(UTC) + timedelta(days=1))  # the step breached: its escalations are instances too

    def workflows(query: str) -> set[str]:
        page = client.get("/v1/instances" + query, headers=keys["reader"])
        assert page.status_code == 200, page.text
        return {i["workflow_id"] for i in page.json()["instances"]}

    assert workflows("") >= {"epa_waste_reg", "oms.sla_violation"}
    assert workflows("?escalations=false") == {"epa_waste_reg"}
    assert workflows("?escalations=false&workflow=oms.sla_violation") == {"oms.sla_violation"}  # named: shown
    from click.testing import CliRunner

    from oms.cli import main

    listed = CliRunner().invoke(main, ["list", "--no-escalations", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {i["workflow_id"] for i in json.loads(listed.stdout)} == {"epa_waste_reg"}


def test_instances_page_newest_first_with_a_cursor(client: TestClient, keys: dict[str, dict[str, str]],
                                                   epa: str) -> None:
    started = [epa] + [oms.start_workflow("epa_waste_reg", {"n": n}) for n in range(6)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "/v1/instances?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(query, headers=keys["reader"]).json()
        seen += [i["id"] for i in page["instances"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == list(reversed(started))
    done = client.get("/v1/instances?status=done", headers=keys["reader"]).json()
    assert done == {"instances": [], "next_cursor": None}


def test_definitions_in_json_and_yaml(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    admin = keys["admin"]
    yaml_text = b"steps:\n  - {id: a, sla: 1m}\n  - {id: b, sla: 2m}\n"
    assert client.put("/v1/workflows/w", content=yaml_text,
                      headers={**admin, "content-type": "application/yaml"}).json() == {"version": 1}
    same = {"id": "w", "steps": [{"id": "a", "sla": "1m"}, {"id": "b", "sla": "2m"}]}
    assert client.put("/v1/workflows/w", json=same, headers=admin).json() == {"version": 1}
    assert client.put("/v1/workflows/w", json={"steps": [{"id": "a", "sla": "5m"}]},
                      headers=admin).json() == {"version": 2}
    one = client.get("/v1/workflows/w?version=1", headers=admin).json()
    assert one["version"] == 1 and [s["id"] for s in one["definition"]["steps"]] == ["a", "b"]
    assert client.get("/v1/workflows/w", headers=admin).json()["version"] == 2
    assert [w["id"] for w in client.get("/v1/workflows", headers=admin).json()] == ["w"]


def test_pull_over_http_runs_a_workflow_to_done(client: TestClient, keys: dict[str, dict[str, str]],
                                                epa: str) -> None:
    admin = keys["admin"]
    empty = client.post("/v1/topics/nobody_here/fetch", json={"max_wait": "0.2s"}, headers=admin)
    assert empty.status_code == 204 and empty.content == b""
    for step in [s["id"] for s in EPA["steps"]]:
        task = _fetch(client, admin, topic=step)  # no worker_id: the server makes one up and returns it
        assert task["worker_id"].startswith("http-") and task["instance_id"] == epa
        extended = client.post(f"/v1/tasks/{task['id']}/extend", json={"lease": "10m", "worker_id": task["worker_id"]},
                               headers=admin)
        assert extended.status_code == 200 and extended.json()["lease_expires_at"] > task["lease_expires_at"]
        assert client.post(f"/v1/tasks/{task['id']}/complete", json={"worker_id": task["worker_id"],
                                                                     "result": {"step": step}},
                           headers=admin).json() == {"status": "done", "repeat": False}
    found = client.get(f"/v1/instances/{epa}", headers=admin).json()
    assert found["status"] == "done" and found["results"]["charge_fee"] == {"step": "charge_fee"}
    assert all(t["queue_wait_s"] is not None and t["run_s"] is not None for t in found["tasks"])


def test_a_long_poll_is_woken_when_a_step_is_offered(client: TestClient, keys: dict[str, dict[str, str]],
                                                     epa: str) -> None:
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(client.post(
        "/v1/topics/validate_tax_id/fetch", json={"max_wait": "10s"}, headers=keys["admin"])))
    waiter.start()
    time.sleep(0.5)  # it waits: nothing is offered on validate_tax_id yet
    assert not got
    first = _fetch(client, keys["admin"], worker_id="w1")
    started = time.monotonic()
    client.post(f"/v1/tasks/{first['id']}/complete", json={"worker_id": "w1"}, headers=keys["admin"])
    waiter.join(10)
    assert got and got[0].status_code == 200 and got[0].json()["step_id"] == "validate_tax_id"
    assert time.monotonic() - started < 3


def vanishing_fetch(client: TestClient, monkeypatch: pytest.MonkeyPatch, claim: str, path: str,
                    body: dict[str, Any], headers: dict[str, str]) -> list[dict[str, Any]]:
    """POST ``body`` to ``path`` in-process; the caller disconnects while ``door.<claim>`` makes its claim. Returns
    the ASGI messages the API sent."""
    from oms.engine import door

    gone = asyncio.Event()
    real = getattr(door, claim)
    loop: list[asyncio.AbstractEventLoop] = []

    def claim_then_vanish(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        loop[0].call_soon_threadsafe(gone.set)  # the client goes away while the claim commits
        time.sleep(0.2)
        return found

    monkeypatch.setattr(door, claim, claim_then_vanish)
    raw = json.dumps(body).encode()
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        loop.append(asyncio.get_running_loop())
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        auth = headers["Authorization"].encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": b"", "query_string": b"",
                 "root_path": "", "headers": [(b"authorization", auth), (b"content-type", b"application/json")],
                 "client": ("127.0.0.1", 1), "server": ("testserver", 80), "app": client.app,
                 "state": {}}
        await client.app(scope, receive, send)

    assert client.portal is not None
    client.portal.call(call)
    monkeypatch.undo()
    return sent


def test_a_claim_made_as_the_caller_left_is_released(client: TestClient, keys: dict[str, dict[str, str]],
                                                     epa: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller disconnects while the claim is being made: the step goes back to pending at once."""
    sent = vanishing_fetch(client, monkeypatch, "claim_topic", f"/v1/topics/{TOPIC}/fetch",
                           {"max_wait": "1s", "worker_id": "ghost"}, keys["admin"])
    assert sent[0]["status"] == 204  # nothing was handed to the caller that left
    info = oms.get_instance(epa)
    first, second = info.tasks[0], info.tasks[1]
    assert (first.status, first.worker_id) == ("lapsed", "ghost")
    assert (second.step_id, second.status, second.attempt) == ("collect_form", "pending", 2)
    kinds = [e.kind for e in oms.history(epa)]
    assert kinds.count("task.lease_expired") == 1
    again = _fetch(client, keys["admin"], worker_id="w2")  # the step is offered again at once
    assert again["attempt"] == 2 and again["step_id"] == "collect_form"


def test_metrics_parse_and_count_from_the_database(client: TestClient, keys: dict[str, dict[str, str]],
                                                   epa: str) -> None:
    admin = keys["admin"]
    task = _fetch(client, admin, worker_id="w1")
    client.post(f"/v1/tasks/{task['id']}/complete", json={"worker_id": "w1"}, headers=admin)
    from oms.ops import metrics

    metrics.roll_up(oms.engine.door.utcnow() + metrics.SETTLE * 2)  # what a scrape a few seconds later rolls up
    text = client.get("/metrics", headers=keys["reader"]).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    open_steps = {(s.labels["step"], s.labels["light"]): s.value for s in families["oms_open_steps"].samples}
    assert open_steps == {("validate_tax_id", "green"): 1.0}
    assert [(s.labels, s.value) for s in families["oms_instances"].samples] == [
        ({"workflow": "epa_waste_reg", "status": "running"}, 1.0)]
    done = [s for s in families["oms_steps_done"].samples if s.name == "oms_steps_done_total"]
    assert [(s.labels, s.value) for s in done] == [({"workflow": "epa_waste_reg", "step": "collect_form"}, 1.0)]
    waits = {s.name: s.value for s in families["oms_queue_wait_seconds"].samples
             if s.labels.get("le") in (None, "+Inf")}
    assert waits["oms_queue_wait_seconds_count"] == 1.0 and waits["oms_queue_wait_seconds_bucket"] == 1.0
    for name in ("oms_steps_failed", "oms_steps_retried", "oms_sla_breaches", "oms_sla_warnings", "oms_escalations",
                 "oms_lease_expiries", "oms_redispatches", "oms_run_seconds", "oms_last_sla_scan_timestamp_seconds",
                 "oms_last_reconcile_timestamp_seconds"):
        assert name in families, name
    other = oms.start_workflow("epa_waste_reg", {"form_id": "F9"})
    oms.cancel_workflow(other)
    metrics.roll_up(oms.engine.door.utcnow() + metrics.SETTLE * 2)
    text = client.get("/metrics", headers=keys["reader"]).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert [(s.labels, s.value) for s in families["oms_instances"].samples] == [
        ({"workflow": "epa_waste_reg", "status": "running"}, 1.0)]  # the cancelled one is counted as it ended
    assert [(s.labels, s.value) for s in families["oms_workflows_finished"].samples
            if s.name.endswith("_total")] == [({"workflow": "epa_waste_reg", "status": "cancelled"}, 1.0)]
    metrics.roll_up(oms.engine.door.utcnow() + metrics.SETTLE * 2)  # nothing new: counted once
    again = {f.name: f for f in text_string_to_metric_families(client.get("/metrics", headers=admin).text)}
    assert [s.value for s in again["oms_steps_done"].samples if s.name == "oms_steps_done_total"] == [1.0]


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and "no SLA scan has run yet" in not_ready.json()["detail"]
    oms.scan_sla()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/v1/topics/{topic}/fetch" in schema["paths"] and "/v1/workflows/{workflow_id}/instances" in schema["paths"]
    # /docs lists the tags in a newcomer's order, though the pull workers' routes are matched first
    assert [tag["name"] for tag in schema["tags"]][:4] == ["workflows", "calendars", "instances", "pull workers"]
    assert client.get("/docs").status_code == 200


def test_every_dependency_runs_on_the_event_loop() -> None:
    """FastAPI runs a plain ``def`` dependency on its thread pool: a hop there and back on every request for what
    reads a header or ``request.state``: each dependency is ``async``."""
    hopping = set()
    for route in routing.routes(create_app()):
        pending = list(route.dependant.dependencies)
        while pending:
            dependency = pending.pop()
            pending += dependency.dependencies
            if dependency.call is not None and not inspect.iscoroutinefunction(dependency.call):
                hopping.add(f"{route.path}: {dependency.call.__qualname__}")
    assert not hopping, sorted(hopping)


def test_oms_token_create_list_revoke(backend: Backend) -> None:
    from click.testing import CliRunner

    from oms.cli import main

    runner = CliRunner()
    made = runner.invoke(main, ["token", "create", "--role", "worker", "--topics", "b,a", "--name", "irs-bot"])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert tokens.find(secret) is not None and "shown once" in made.stderr
    listed = runner.invoke(main, ["token", "list"]).stdout
    assert "irs-bot" in listed and "worker" in listed and "a,b" in listed and "live" in listed
    assert secret not in listed and tokens.digest(secret) not in listed
    assert runner.invoke(main, ["token", "revoke", "irs-bot"]).exit_code == 0
    assert "revoked" in runner.invoke(main, ["token", "list"]).stdout and tokens.find(secret) is None
    unknown = runner.invoke(main, ["token", "revoke", "nobody"])
    assert unknown.exit_code == 1 and "no token is named 'nobody'" in unknown.stderr
    bad = runner.invoke(main, ["token", "create", "--role", "admin", "--topics", "a"])
    assert bad.exit_code == 1 and "only worker tokens have topics" in bad.stderr


def test_every_route_has_a_rule_and_every_rule_a_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closed by default: the app walks its routes against the role table as it is made, and refuses to be made
    with a route no rule names."""
    assert set(served(create_app())) == auth.ALL  # and no rule outlives its route
    monkeypatch.setattr(auth, "ALL", auth.ALL - {("POST", "/v1/instances/{instance_id}/retry")})
    with pytest.raises(RuntimeError, match="who may call POST /v1/instances/{instance_id}/retry"):
        create_app()


def test_a_route_added_without_a_rule_is_refused_to_everyone(keys: dict[str, dict[str, str]]) -> None:
    app = create_app()

    @app.get("/whoami")
    def whoami() -> dict[str, str]:
        return {"leaked": "yes"}

    with TestClient(app) as client:
        refused = client.get("/whoami", headers=keys["admin"])
        assert refused.status_code == 403 and "no rule says who may call GET /whoami" in refused.json()["detail"]


def test_the_page_cookie_needs_the_csrf_header_for_a_change(client: TestClient, keys: dict[str, dict[str, str]],
                                                            epa: str) -> None:
    client.cookies.set(TOKEN_COOKIE, keys["admin"]["Authorization"].split()[1])
    assert client.get(f"/v1/instances/{epa}").status_code == 200  # reading by cookie alone
    assert client.post(f"/v1/instances/{epa}/cancel").json()["error"] == "CsrfFailed"
    client.cookies.set(CSRF_COOKIE, "x" * 20)
    assert client.post(f"/v1/instances/{epa}/cancel", headers={CSRF_HEADER: "x" * 20}).status_code == 200


def test_an_unreachable_database_or_broker_is_503(client: TestClient, keys: dict[str, dict[str, str]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import kombu.exceptions
    from sqlalchemy.exc import OperationalError

    from oms.api import instances as api_instances
    from oms.exceptions import BrokerUnavailable

    def database_down(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused, password=hunter2"))

    def broker_down(*_: Any, **__: Any) -> Any:
        raise kombu.exceptions.OperationalError("Error 111 connecting to redis")

    def not_published(*_: Any, **__: Any) -> Any:
        raise BrokerUnavailable("redis://x", "wf-" + "1" * 32, "refused")

    monkeypatch.setattr(api_instances.queries, "list_instances", database_down)
    detail = _error(client.get("/v1/instances", headers=keys["admin"]), 503, "DatabaseUnavailable")
    assert "hunter2" not in detail
    monkeypatch.setattr(api_instances.queries, "overdue", broker_down)
    _error(client.get("/v1/overdue", headers=keys["admin"]), 503, "BrokerUnavailable")
    monkeypatch.setattr(api_instances.starts, "start", not_published)
    detail = _error(client.post("/v1/workflows/w/instances", json={}, headers=keys["admin"]), 503, "BrokerUnavailable")
    assert "wf-" + "1" * 32 in detail  # recorded: the reconciler publishes it, the caller may retry with its key


def test_a_database_outage_is_503_after_a_few_seconds_not_a_workers_minutes(
        client: TestClient, keys: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    from oms.api import instances as api_instances
    from oms.celery.config import configure
    from oms.store.db import retrying

    attempts = []

    def database_down() -> Any:
        attempts.append(time.monotonic())
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    from oms.settings import get_settings

    current = get_settings()
    configure(database_url=current.database_url, broker_url=current.broker_url, home=current.home,
              api_db_retry_seconds=0.5)  # workers keep OMS_DB_RETRY_SECONDS (300 s)
    monkeypatch.setattr(api_instances.queries, "list_instances", lambda *_, **__: retrying(database_down, "reading"))
    began = time.monotonic()
    _error(client.get("/v1/instances", headers=keys["admin"]), 503, "DatabaseUnavailable")
    assert time.monotonic() - began < 3 and len(attempts) >= 2  # retried, then gave up within the API's budget


def test_a_clock_paused_and_resumed_over_http_and_calendars_in_json_and_yaml(
        client: TestClient, keys: dict[str, dict[str, str]], epa: str) -> None:
    admin, worker, starter = keys["admin"], keys["worker"], keys["starter"]
    task = _fetch(client, worker, worker_id="w1")
    assert client.post(f"/v1/tasks/{task['id']}/pause", json={"reason": "waiting for citizen", "worker_id": "w2"},
                       headers=worker).status_code == 409  # not the holder
    paused = client.post(f"/v1/tasks/{task['id']}/pause", json={"reason": "waiting for citizen", "worker_id": "w1"},
                         headers=worker)
    assert paused.json() == {"paused": True}
    step = client.get(f"/v1/instances/{epa}", headers=admin).json()["tasks"][0]
    assert step["pause_reason"] == "waiting for citizen" and step["sla_clock"]["paused"] is True
    assert client.post(f"/v1/tasks/{task['id']}/resume", headers=starter).json() == {"resumed": True}  # the portal
    assert client.post(f"/v1/tasks/{task['id']}/resume", headers=starter).json() == {"resumed": False}
    # parked: whoever the portal hands it to completes it
    done = client.post(f"/v1/tasks/{task['id']}/complete", json={"worker_id": "clerk-7"}, headers=worker)
    assert done.json() == {"status": "done", "repeat": False}
    kinds = [e["kind"] for e in client.get(f"/v1/instances/{epa}/history", headers=admin).json()]
    clocked = [k for k in kinds if k in ("task.clock_paused", "task.clock_resumed", "task.done")]
    assert clocked == ["task.clock_paused", "task.clock_resumed", "task.done"]
    saved = client.put("/v1/calendars/office", json=OFFICE, headers=admin)
    assert saved.json() == {"id": "office", "rescheduled": 0}
    yaml_body = "timezone: Europe/Paris\nhours: {mon-fri: '09:00-17:00'}\nholidays: FR\n"
    saved = client.put("/v1/calendars/paris", content=yaml_body, headers={**admin, "Content-Type": "application/yaml"})
    assert saved.status_code == 200, saved.text
    assert [c["id"] for c in client.get("/v1/calendars", headers=keys["reader"]).json()] == ["office", "paris"]
    bad = client.put("/v1/calendars/mars", json={"timezone": "Mars/Olympus", "hours": {"mon": "09:00-17:00"}},
                     headers=admin)
    assert bad.status_code == 422 and "unknown time zone 'Mars/Olympus'" in bad.json()["detail"]
    missing = client.get("/v1/calendars/nowhere", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"] == "UnknownCalendar"
