"""People in the loop over HTTP, in-process (TestClient, SQLite): persons' and supervisors' tokens, the inbox, claim,
release, complete with a form, reassign; signals by instance and by business key; the business key filter; `oms user`.

``tests/integration/test_api_people.py`` does the same against a real ``oms api`` on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import oms
from oms.api import create_app
from oms.cli import main
from oms.store import tokens

from ..conftest import Backend
from .test_api import _endpoints, _error
from .test_people import FORM, INSPECTION, LATE_SIGNAL, PORTAL

#: Token roles of the API, and the people (their own tokens): name -> (groups, role).
TOKEN_ROLES = ("admin", "starter", "reader", "worker", "signaller")
PEOPLE = {"alice": (["inspectors"], "person"), "bob": (["inspectors"], "person"), "carol": (["billing"], "person"),
          "dave": (["supervisors"], "supervisor"), "erin": (["inspectors"], "supervisor")}
Headers = dict[str, dict[str, str]]


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def keys(backend: Backend) -> Headers:
    """An ``Authorization`` header per token role and per person."""
    made = {role: _bearer(tokens.create(role, name=f"t-{role}", topics=["report"] if role == "worker" else None)[0])
            for role in TOKEN_ROLES}
    for name, (groups, role) in PEOPLE.items():
        made[name] = _bearer(oms.create_user(name, groups, role=role)[0])
    return made


@pytest.fixture
def client(keys: Headers) -> Iterator[TestClient]:
    oms.Workflow(**INSPECTION).save()  # type: ignore[arg-type]
    oms.Workflow(**PORTAL).save()  # type: ignore[arg-type]
    oms.Workflow(**LATE_SIGNAL).save()  # type: ignore[arg-type]
    with TestClient(create_app()) as found:
        yield found


def _inspection(client: TestClient, keys: Headers, key: str | None = None) -> tuple[str, str]:
    """An inspection started over HTTP: its instance id and its human step's task id."""
    started = client.post("/v1/workflows/inspection/instances", json={"payload": {"facility": "Acme"},
                                                                      "business_key": key}, headers=keys["starter"])
    assert started.status_code == 201, started.text
    instance_id = started.json()["instance_id"]
    return instance_id, oms.get_instance(instance_id).tasks[0].id


def test_persons_and_signallers_may_call_only_their_routes(client: TestClient, keys: Headers) -> None:
    """Closed by default: every route that is not the people's refuses a person's token with 403 naming her role,
    and a signaller's too; the people's and the signals' routes refuse every other role."""
    instance_id, task_id = _inspection(client, keys)
    for method, path, body, _ in _endpoints(instance_id, task_id):
        for who in ("alice", "dave", "signaller"):
            refused = client.request(method, path, json=body, headers=keys[who])
            detail = _error(refused, 403, "Forbidden")
            assert f"a {'supervisor' if who == 'dave' else 'person' if who == 'alice' else who} token" in detail
    ours = [("GET", "/v1/inbox?user=alice", None, {"admin", "alice"}),  # dave reads as himself only
            ("GET", f"/v1/tasks/{task_id}?user=alice", None, {"admin", "alice"}),
            ("POST", f"/v1/tasks/{task_id}/claim", None, {"alice", "dave"}),
            ("POST", f"/v1/tasks/{task_id}/release", None, {"alice", "dave"}),
            ("POST", f"/v1/tasks/{task_id}/reassign", {"groups": ["inspectors"]}, {"admin", "dave"}),
            ("POST", f"/v1/instances/{instance_id}/signals/form_submitted", {}, {"admin", "starter", "signaller"}),
            ("POST", "/v1/workflows/portal/signals/form_submitted", {"business_key": "K"},
             {"admin", "starter", "signaller"})]
    for method, path, body, allowed in ours:
        for who in (*TOKEN_ROLES, "alice", "dave"):
            if who not in allowed:
                _error(client.request(method, path, json=body, headers=keys[who]), 403, "Forbidden")
        assert client.request(method, path, json=body).status_code == 401


def test_an_inspector_claims_from_her_inbox_and_completes_with_the_form(client: TestClient, keys: Headers) -> None:
    instance_id, task_id = _inspection(client, keys, key="F8700-12-42")
    inbox = client.get("/v1/inbox", headers=keys["alice"])
    assert inbox.status_code == 200 and inbox.json()["user"] == "alice" and inbox.json()["now"]
    [item] = inbox.json()["items"]
    [expected] = [i.as_dict() for i in oms.inbox("alice")]
    assert {**item, "time_left_s": 0} == {**expected, "time_left_s": 0}  # InboxItem.as_dict(), as it is
    assert (item["task_id"], item["business_key"], item["form"], item["actionable"]) == (task_id, "F8700-12-42",
                                                                                          FORM, True)
    assert client.get("/v1/inbox", headers=keys["carol"]).json()["items"] == []

    step = client.get(f"/v1/tasks/{task_id}", headers=keys["alice"]).json()
    assert step["payload"] == {"facility": "Acme"} and step["results"] == {} and step["claimed_by"] is None
    _error(client.get(f"/v1/tasks/{task_id}", headers=keys["carol"]), 403, "NotAssigned")
    _error(client.post(f"/v1/tasks/{task_id}/claim", headers=keys["carol"]), 403, "NotAssigned")

    claimed = client.post(f"/v1/tasks/{task_id}/claim", headers=keys["alice"])
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "alice" and claimed.json()["actionable"]
    assert claimed.json()["payload"] == {"facility": "Acme"}
    assert client.post(f"/v1/tasks/{task_id}/claim", headers=keys["alice"]).status_code == 200  # hers already
    assert "alice" in _error(client.post(f"/v1/tasks/{task_id}/claim", headers=keys["bob"]), 409, "TaskClaimed")
    [taken] = client.get("/v1/inbox", headers=keys["bob"]).json()["items"]
    assert (taken["claimed_by"], taken["actionable"]) == ("alice", False)

    _error(client.post(f"/v1/tasks/{task_id}/complete", json={"result": {"inspector": "bob"}}, headers=keys["bob"]),
           409, "NotLeaseHolder")
    _error(client.post(f"/v1/tasks/{task_id}/complete", json={"result": {}}, headers=keys["carol"]),
           403, "NotAssigned")
    _error(client.post(f"/v1/tasks/{task_id}/complete", json={"result": {"inspector": "bob"}, "worker_id": "bob"},
                       headers=keys["alice"]), 403, "Forbidden")  # as herself only
    refused = client.post(f"/v1/tasks/{task_id}/complete", json={"result": {"visit_on": "next tuesday"}},
                          headers=keys["alice"])
    assert refused.status_code == 422
    body = refused.json()
    assert body["error"] == "FormError" and "inspector" in body["detail"]
    assert body["fields"] == {"inspector": "'inspector' is a required property",
                              "visit_on": "'next tuesday' is not a 'date'"}

    done = client.post(f"/v1/tasks/{task_id}/complete", json={"result": {"inspector": "alice",
                                                                        "visit_on": "2026-12-10"},
                                                             "worker_id": "alice"}, headers=keys["alice"])
    assert done.json() == {"status": "done", "repeat": False}
    info = oms.get_instance(instance_id)
    assert info.results["assign_inspector"] == {"inspector": "alice", "visit_on": "2026-12-10"}
    report = info.tasks[-1]
    assert (report.step_id, report.status) == ("report", "pending")
    assert client.get("/v1/inbox", headers=keys["alice"]).json()["items"] == []
    detail = _error(client.post(f"/v1/tasks/{report.id}/fail", json={"reason": "no"}, headers=keys["alice"]),
                    403, "Forbidden")
    assert "human steps only" in detail
    _error(client.post(f"/v1/tasks/{task_id}/complete", json={}, headers=keys["admin"]), 422, "InvalidRequest")


def test_a_person_releases_and_fails_her_step(client: TestClient, keys: Headers) -> None:
    instance_id, task_id = _inspection(client, keys)
    client.post(f"/v1/tasks/{task_id}/claim", headers=keys["alice"])
    _error(client.post(f"/v1/tasks/{task_id}/release", headers=keys["bob"]), 409, "NotLeaseHolder")
    _error(client.post(f"/v1/tasks/{task_id}/release", headers=keys["carol"]), 403, "NotAssigned")
    released = client.post(f"/v1/tasks/{task_id}/release", json={"reason": "on leave"}, headers=keys["alice"])
    assert released.json() == {"task_id": task_id, "status": "pending"}
    _error(client.post(f"/v1/tasks/{task_id}/release", headers=keys["alice"]), 409, "TaskNotClaimed")
    assert client.post(f"/v1/tasks/{task_id}/claim", headers=keys["bob"]).json()["claimed_by"] == "bob"
    failed = client.post(f"/v1/tasks/{task_id}/fail", json={"reason": "the facility is closed"}, headers=keys["bob"])
    assert failed.json() == {"status": "failed", "repeat": False}
    assert oms.get_instance(instance_id).status == "failed"
    events = [e.kind for e in oms.history(instance_id)]
    assert events.count("task.released") == 1 and "task.failed" in events


def test_admins_read_as_a_person_and_people_as_themselves(client: TestClient, keys: Headers) -> None:
    _, task_id = _inspection(client, keys)
    [item] = client.get("/v1/inbox?user=alice", headers=keys["admin"]).json()["items"]
    assert item["task_id"] == task_id
    assert client.get(f"/v1/tasks/{task_id}?user=bob", headers=keys["admin"]).json()["task_id"] == task_id
    assert "?user=" in _error(client.get("/v1/inbox", headers=keys["admin"]), 422, "InvalidArgument")
    _error(client.get("/v1/inbox?user=zoe", headers=keys["admin"]), 404, "UnknownUser")
    _error(client.get("/v1/inbox?user=bob", headers=keys["alice"]), 403, "Forbidden")
    assert client.get("/v1/inbox?user=alice", headers=keys["alice"]).status_code == 200
    _error(client.get(f"/v1/tasks/tk-{'0' * 32}", headers=keys["alice"]), 404, "TaskNotFound")
    _error(client.get("/v1/tasks/nope", headers=keys["alice"]), 422, "InvalidArgument")


def test_a_supervisor_reassigns_her_groups_steps_only(client: TestClient, keys: Headers) -> None:
    instance_id, task_id = _inspection(client, keys)
    client.post(f"/v1/tasks/{task_id}/claim", headers=keys["alice"])
    _error(client.post(f"/v1/tasks/{task_id}/reassign", json={"user": "dave"}, headers=keys["dave"]),
           403, "NotAssigned")  # dave supervises "supervisors", not the inspectors
    moved = client.post(f"/v1/tasks/{task_id}/reassign", json={"user": "bob"}, headers=keys["erin"])
    assert moved.json() == {"task_id": task_id, "claimed_by": "bob", "assign": {"users": ["bob"], "groups": []}}
    assert client.get(f"/v1/tasks/{task_id}", headers=keys["bob"]).json()["claimed_by"] == "bob"
    # erin's groups are no longer the step's: only an admin (or a supervisor it names) may move it on
    _error(client.post(f"/v1/tasks/{task_id}/reassign", json={"groups": ["inspectors"]}, headers=keys["erin"]),
           403, "NotAssigned")
    moved = client.post(f"/v1/tasks/{task_id}/reassign", json={"user": "dave"}, headers=keys["admin"])
    assert moved.json()["claimed_by"] == "dave"
    moved = client.post(f"/v1/tasks/{task_id}/reassign", json={"groups": ["billing", "billing"]}, headers=keys["dave"])
    assert moved.json() == {"task_id": task_id, "claimed_by": None, "assign": {"users": [], "groups": ["billing"]}}
    [item] = client.get("/v1/inbox", headers=keys["carol"]).json()["items"]
    assert (item["task_id"], item["claimed_by"]) == (task_id, None)
    _error(client.post(f"/v1/tasks/{task_id}/reassign", json={}, headers=keys["admin"]), 422, "InvalidArgument")
    _error(client.post(f"/v1/tasks/{task_id}/reassign", json={"user": "zoe"}, headers=keys["admin"]),
           404, "UnknownUser")
    reassigned = [e.data["by"] for e in oms.history(instance_id) if e.kind == "task.reassigned"]
    assert reassigned == ["erin", "t-admin", "dave"]


def test_a_disabled_persons_token_stops_at_once(client: TestClient, keys: Headers) -> None:
    _, task_id = _inspection(client, keys)
    client.post(f"/v1/tasks/{task_id}/claim", headers=keys["alice"])
    assert client.get("/v1/inbox", headers=keys["alice"]).status_code == 200
    assert len(oms.disable_user("alice")) == 1
    refused = client.get("/v1/inbox", headers=keys["alice"])
    assert refused.status_code == 401 and refused.json() == {"error": "Unauthorized",
                                                             "detail": "unknown or revoked token"}
    [item] = client.get("/v1/inbox", headers=keys["bob"]).json()["items"]
    assert (item["task_id"], item["claimed_by"]) == (task_id, None)  # her claim went back to the queue


def test_signals_by_instance_and_by_business_key_with_idempotency(client: TestClient, keys: Headers) -> None:
    start = {"payload": {"facility": "Acme"}, "business_key": "F8700-12-42"}
    started = client.post("/v1/workflows/portal/instances", json=start, headers=keys["starter"])
    assert started.status_code == 201
    instance_id = started.json()["instance_id"]
    assert instance_id in _error(client.post("/v1/workflows/portal/instances", json=start, headers=keys["admin"]),
                                 409, "BusinessKeyInUse")
    waiting = oms.get_instance(instance_id).tasks[0]

    body = {"business_key": "F8700-12-42", "data": {"epa_id": "TXD0001"}, "idempotency_key": "portal-req-1"}
    first = client.post("/v1/workflows/portal/signals/form_submitted", json=body, headers=keys["signaller"])
    assert first.status_code == 202
    assert first.json() == {"instance_id": instance_id, "name": "form_submitted", "signal_id": first.json()["signal_id"],
                            "task_id": waiting.id, "new": True}
    again = client.post("/v1/workflows/portal/signals/form_submitted", json=body, headers=keys["starter"])
    assert again.status_code == 200 and again.json() == {**first.json(), "new": False}
    info = oms.get_instance(instance_id)
    assert info.results["collect_form"] == {"epa_id": "TXD0001"} and info.current_step == "validate_tax_id"
    _error(client.post(f"/v1/instances/{instance_id}/signals/form_submitted", headers=keys["signaller"]),
           409, "SignalRefused")
    _error(client.post("/v1/workflows/portal/signals/form_submitted", json={"business_key": "F8700-12-43"},
                       headers=keys["signaller"]), 404, "UnknownBusinessKey")
    _error(client.post(f"/v1/instances/{instance_id}/signals/payment_made", headers=keys["signaller"]),
           422, "UnknownSignal")
    _error(client.post("/v1/workflows/portal/signals/form_submitted", json={"data": {}}, headers=keys["signaller"]),
           422, "InvalidRequest")  # no business key
    _error(client.post(f"/v1/instances/{instance_id}/signals/form_submitted", json={"data": [1]},
                       headers=keys["signaller"]), 422, "InvalidRequest")

    # a signal before its step is ready is kept (no task yet); its data must fit the step's form
    late = client.post("/v1/workflows/late_signal/instances", json={}, headers=keys["starter"]).json()["instance_id"]
    refused = client.post(f"/v1/instances/{late}/signals/form_submitted", json={"data": {"wrong": 1}},
                          headers=keys["signaller"])
    assert refused.status_code == 422 and refused.json()["fields"] == {
        "form_number": "'form_number' is a required property"}
    kept = client.post(f"/v1/instances/{late}/signals/form_submitted", json={"data": {"form_number": "F-9"}},
                       headers=keys["admin"])
    assert kept.status_code == 202 and kept.json()["task_id"] is None and kept.json()["new"] is True
    _error(client.post(f"/v1/instances/{late}/signals/form_submitted", json={"data": {"form_number": "F-10"}},
                       headers=keys["admin"]), 409, "SignalRefused")


def test_instances_are_listed_and_read_with_their_business_key(client: TestClient, keys: Headers) -> None:
    keyed, _ = _inspection(client, keys, key="F8700-12-42")
    other, _ = _inspection(client, keys, key="F8700-12-43")
    _inspection(client, keys)
    listed = client.get("/v1/instances?business_key=F8700-12-42", headers=keys["reader"]).json()
    assert [(i["id"], i["business_key"]) for i in listed["instances"]] == [(keyed, "F8700-12-42")]
    assert client.get("/v1/instances?business_key=nope", headers=keys["reader"]).json()["instances"] == []
    assert len(client.get("/v1/instances?workflow=inspection", headers=keys["reader"]).json()["instances"]) == 3
    assert client.get(f"/v1/instances/{other}", headers=keys["reader"]).json()["business_key"] == "F8700-12-43"


def test_the_openapi_document_names_the_new_routes_and_their_errors(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/tasks/{task_id}/complete"]["post"]["responses"]) >= {"200", "403", "409", "422"}
    form = paths["/v1/tasks/{task_id}/complete"]["post"]["responses"]["422"]["content"]["application/json"]
    assert form["schema"]["$ref"].endswith("/Error422")
    signal = paths["/v1/workflows/{workflow_id}/signals/{name}"]["post"]["responses"]
    assert {"200", "202", "404", "409"} <= set(signal)
    assert paths["/v1/inbox"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/InboxPage")


def _cli(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, (args, result.output, result.stderr)
    return result


def test_oms_user_create_list_disable(backend: Backend) -> None:
    made = _cli("user", "create", "alice", "--groups", "inspectors,supervisors", "--email", "alice@agency.gov",
                "--role", "supervisor")
    secret = made.stdout.strip()
    assert "shown once" in made.stderr and oms.store.users.find_digest(tokens.digest(secret)) is not None
    _cli("user", "create", "bob", "--groups", "inspectors")
    listed = _cli("user", "list").stdout
    assert listed.splitlines()[0].split() == ["name", "groups", "email", "role", "created", "disabled"]
    assert "alice@agency.gov" in listed and "inspectors,supervisors" in listed and "supervisor" in listed
    assert secret not in listed and tokens.digest(secret) not in listed
    import json

    rows = json.loads(_cli("user", "list", "--json").stdout)
    assert [(r["name"], r["groups"], r["role"], r["disabled_at"]) for r in rows] == [
        ("alice", ["inspectors", "supervisors"], "supervisor", None), ("bob", ["inspectors"], "person", None)]
    assert not any("token" in key for key in rows[0])
    oms.Workflow(**INSPECTION).save()  # type: ignore[arg-type]
    oms.claim(oms.get_instance(oms.start_workflow("inspection", {})).tasks[0].id, "alice")
    assert _cli("user", "disable", "alice").stdout.strip() == (
        "disabled alice: 1 claimed step(s) went back to their queues")
    assert oms.store.users.find_digest(tokens.digest(secret)) is None
    assert "disabled" not in _cli("user", "list").stdout.splitlines()[2]  # bob's line: live
    for args, said in ((["user", "create", "alice", "--groups", "x"], "exists already"),
                       (["user", "create", "zed", "--groups", "x", "--email", "nope"], "does not look like"),
                       (["user", "disable", "zoe"], "unknown user 'zoe'")):
        failed = _cli(*args, code=1)
        assert len(failed.stderr.strip().splitlines()) == 1 and said in failed.stderr, failed.stderr
    assert _cli("user", "create", "x", "--groups", "g", "--role", "boss", code=2).exit_code == 2


def test_oms_user_update_token_and_enable_again(backend: Backend) -> None:
    first = _cli("user", "create", "alice", "--groups", "inspectors").stdout.strip()
    assert _cli("user", "update", "alice", "--email", "alice@epa.gov", "--groups", "inspectors,auditors").stdout \
        .strip() == "updated user 'alice' (person, groups auditors,inspectors, e-mail alice@epa.gov)"
    assert oms.store.users.get("alice").email == "alice@epa.gov"
    assert _cli("user", "update", "alice", "--email", "").stdout.strip().endswith("e-mail -)")  # none
    assert "nothing to change" in _cli("user", "update", "alice", code=1).stderr
    # a lost token: a new one, and the old one stops at once
    second = _cli("user", "token", "alice").stdout.strip()
    assert second != first and oms.store.users.find_digest(tokens.digest(first)) is None
    assert oms.store.users.find_digest(tokens.digest(second)).name == "alice"  # type: ignore[union-attr]
    _cli("user", "disable", "alice")
    assert "user 'alice' is disabled (`oms user enable alice`" in _cli("user", "token", "alice", code=1).stderr
    # enabled again with a new token; the one she had when disabled never works again
    third = _cli("user", "enable", "alice").stdout.strip()
    assert oms.store.users.get("alice").disabled_at is None
    assert oms.store.users.find_digest(tokens.digest(second)) is None
    assert oms.store.users.find_digest(tokens.digest(third)).groups == ("auditors", "inspectors")  # type: ignore[union-attr]
    assert "unknown user 'zoe'" in _cli("user", "enable", "zoe", code=1).stderr


def test_oms_start_and_list_by_business_key(backend: Backend) -> None:
    oms.Workflow(**PORTAL).save()  # type: ignore[arg-type]
    instance_id = _cli("start", "portal", "--key", "F8700-12-42").stdout.strip()
    _cli("start", "portal")
    assert instance_id in _cli("start", "portal", "--key", "F8700-12-42", code=1).stderr  # in use
    listed = _cli("list", "--key", "F8700-12-42").stdout.splitlines()
    assert "key" in listed[0].split() and len(listed) == 2 and instance_id in listed[1] and "F8700-12-42" in listed[1]
    assert "key       F8700-12-42" in _cli("status", instance_id).stdout
    secret = _cli("token", "create", "--role", "signaller", "--name", "portal").stdout.strip()
    assert tokens.find(secret) is not None and tokens.find(secret).role == "signaller"  # type: ignore[union-attr]


def test_a_person_completes_her_steps_in_a_batch_as_herself(client: TestClient, keys: Headers) -> None:
    """The batch routes decide who holds each task as the single ones do: a person herself, on human steps she may
    see; each refusal (a form not filled in, a step not hers) is that task's alone."""
    (_, mine), (_, other) = _inspection(client, keys), _inspection(client, keys)
    assert client.post(f"/v1/tasks/{mine}/claim", headers=keys["alice"]).status_code == 200
    results = client.post("/v1/batches/complete", json={"tasks": [
        {"task_id": mine, "result": {"visit_on": "next tuesday"}},
        {"task_id": other, "result": {"inspector": "alice", "visit_on": "2026-12-10"}}]},
        headers=keys["alice"]).json()["results"]
    assert [(r["status"], r["error"]) for r in results] == [("refused", "FormError"), ("refused", "TaskNotClaimed")]
    assert results[0]["fields"]["visit_on"] == "'next tuesday' is not a 'date'"
    refused = client.post("/v1/batches/complete", json={"tasks": [{"task_id": mine, "result": {}}]},
                          headers=keys["carol"]).json()["results"]
    assert (refused[0]["status"], refused[0]["error"]) == ("refused", "NotAssigned")
    as_bob = client.post("/v1/batches/complete", json={"worker_id": "bob", "tasks": [{"task_id": mine}]},
                         headers=keys["alice"]).json()["results"]
    assert (as_bob[0]["status"], as_bob[0]["error"]) == ("refused", "Forbidden")
    done = client.post("/v1/batches/complete", json={"tasks": [
        {"task_id": mine, "result": {"inspector": "alice", "visit_on": "2026-12-10"}}]}, headers=keys["alice"])
    assert done.json() == {"results": [{"task_id": mine, "status": "done", "repeat": False}]}
