"""Batches over HTTP, in-process (TestClient, SQLite): fetch-batch, complete and fail many, each task judged on its
own; who may call them; a claim made for a caller that left is released.

``tests/integration/test_api_batches.py`` runs them against a real ``oms api`` on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

import oms

from ..conftest import EPA
from . import test_api
from .test_api import TOPIC

#: The in-process API and its tokens, as ``tests/unit/test_api.py`` makes them.
keys, client, epa = test_api.keys, test_api.client, test_api.epa

Headers = dict[str, dict[str, str]]
NOBODY = "tk-" + "0" * 32


def _start(client: TestClient, admin: dict[str, str], n: int) -> list[str]:
    found = []
    for i in range(n):
        started = client.post("/v1/workflows/epa_waste_reg/instances", json={"payload": {"n": i}}, headers=admin)
        assert started.status_code == 201, started.text
        found.append(started.json()["instance_id"])
    return found


def _batch(client: TestClient, headers: dict[str, str], topic: str = TOPIC, **body: Any) -> list[dict[str, Any]]:
    response = client.post(f"/v1/topics/{topic}/fetch-batch", json={"max_wait": "2s", **body}, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["tasks"])


def test_fetch_batch_then_complete_and_fail_many_each_judged_on_its_own(client: TestClient, keys: Headers) -> None:
    admin, worker = keys["admin"], keys["worker"]
    assert client.put("/v1/workflows/epa_waste_reg", json=EPA, headers=admin).status_code == 200
    ids = _start(client, admin, 5)
    first = _batch(client, worker, max_tasks=3, worker_id="w1")
    rest = _batch(client, worker, max_tasks=100, worker_id="w1")
    assert len(first) == 3 and len(rest) == 2
    assert sorted(t["instance_id"] for t in first + rest) == sorted(ids)
    assert {t["worker_id"] for t in first} == {"w1"} and all(t["lease_expires_at"] for t in first)
    empty = client.post(f"/v1/topics/{TOPIC}/fetch-batch", json={"max_wait": 0.2}, headers=worker)
    assert empty.status_code == 204 and empty.content == b""

    a, b, c = first
    done = client.post("/v1/batches/complete", json={"worker_id": "w1", "tasks": [
        {"task_id": a["id"], "result": {"ok": 1}}, {"task_id": NOBODY}, {"task_id": b["id"], "result": {"ok": 2}},
        {"task_id": a["id"]}, {"task_id": "not an id!"}]}, headers=worker)
    assert done.status_code == 200, done.text
    results = done.json()["results"]
    assert [(r["task_id"], r["status"], r.get("error")) for r in results] == [
        (a["id"], "done", None), (NOBODY, "refused", "TaskNotFound"), (b["id"], "done", None),
        (a["id"], "refused", "TaskAlreadyFinished"), ("not an id!", "refused", "InvalidArgument")]
    assert results[0] == {"task_id": results[0]["task_id"], "status": "done", "repeat": False} and results[1]["detail"]
    assert oms.get_instance(a["instance_id"]).results == {"collect_form": {"ok": 1}}

    # a worker token limited to its topics may not touch a task of another: that one is refused Forbidden
    [tax] = _batch(client, admin, topic="validate_tax_id", worker_id="w1", max_tasks=1)
    mixed = client.post("/v1/batches/fail", json={"worker_id": "w1", "tasks": [
        {"task_id": tax["id"], "reason": "not mine"}, {"task_id": c["id"], "reason": "IRS mismatch"},
        {"task_id": rest[0]["id"], "reason": ""}]}, headers=worker).json()["results"]
    assert [(r["status"], r.get("error")) for r in mixed] == [
        ("refused", "Forbidden"), ("failed", None), ("refused", "InvalidArgument")]
    assert "validate_tax_id" in mixed[0]["detail"]
    assert oms.get_instance(c["instance_id"]).status == "failed"
    assert [t.status for t in oms.get_instance(tax["instance_id"]).tasks][-1] == "running"
    held = client.post("/v1/batches/complete", json={"worker_id": "w2", "tasks": [{"task_id": rest[1]["id"]}]},
                       headers=worker).json()["results"]
    assert (held[0]["status"], held[0]["error"]) == ("refused", "NotLeaseHolder")


def test_batch_requests_are_checked_whole(client: TestClient, keys: Headers, epa: str) -> None:
    admin = keys["admin"]
    for body, where in (({"max_tasks": 0}, "max_tasks"), ({"max_tasks": 101}, "max_tasks"),
                        ({"maxTasks": 5}, "maxTasks"), ({"max_wait": "6m"}, "max_wait")):
        refused = client.post(f"/v1/topics/{TOPIC}/fetch-batch", json={"max_wait": 0, **body}, headers=admin)
        assert refused.status_code == 422 and where in refused.json()["detail"], refused.text
    for path in ("/v1/batches/complete", "/v1/batches/fail"):
        item = {"task_id": NOBODY, **({"reason": "x"} if path.endswith("fail") else {})}
        for body, where in (({"worker_id": "w", "tasks": []}, "tasks"),
                            ({"worker_id": "w", "tasks": [item] * 101}, "tasks"),
                            ({"tasks": [item]}, "worker_id"), ({"worker_id": "w\n", "tasks": [item]}, "worker"),
                            ({"worker_id": "w", "tasks": [{**item, "extra": 1}]}, "extra")):
            refused = client.post(path, json=body, headers=admin)
            assert refused.status_code == 422 and where in refused.json()["detail"], (path, body, refused.text)
    for role, allowed in (("admin", True), ("worker", True), ("starter", False), ("reader", False)):
        for path in ("/v1/batches/complete", "/v1/batches/fail"):
            response = client.post(path, json={"worker_id": "w", "tasks": [{"task_id": NOBODY, "reason": "x"}]
                                               if path.endswith("fail") else [{"task_id": NOBODY}]},
                                   headers=keys[role])
            assert response.status_code == (200 if allowed else 403), (role, path, response.text)
        assert client.post("/v1/batches/complete", json={"worker_id": "w", "tasks": [{"task_id": NOBODY}]}
                           ).status_code == 401


def test_a_batch_claimed_as_the_caller_left_is_released(client: TestClient, keys: Headers, epa: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller disconnects while the claim is being made: every step claimed for it goes back at once."""
    admin = keys["admin"]
    second = _start(client, admin, 1)[0]
    sent = test_api.vanishing_fetch(client, monkeypatch, "claim_tasks", f"/v1/topics/{TOPIC}/fetch-batch",
                                    {"max_wait": "1s", "worker_id": "ghost", "max_tasks": 10}, admin)
    assert sent[0]["status"] == 204  # nothing was handed to the caller that left
    for instance_id in (epa, second):
        first, again = oms.get_instance(instance_id).tasks
        assert (first.status, first.worker_id) == ("lapsed", "ghost")
        assert (again.step_id, again.status, again.attempt) == ("collect_form", "pending", 2)
    assert sorted(t["attempt"] for t in _batch(client, admin, worker_id="w2")) == [2, 2]
