"""Batches against a real ``oms api`` on PostgreSQL and Redis: workers claiming and finishing many steps per
request at once, a join finished in one request, a caller that leaves mid-poll."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import select

import oms
from oms.store.db import transaction
from oms.store.tables import EventRow

from ..conftest import Backend
from ..invariants import assert_consistent
from . import test_api_server
from .test_api_server import ApiProcess

#: A real ``oms api`` process and an admin's token, as ``tests/integration/test_api_server.py`` makes them.
admin, api = test_api_server.admin, test_api_server.api

pytestmark = pytest.mark.integration

#: Five branches on one topic and their join.
FAN = {"id": "http_fan", "steps": [
    {"id": "http_split", "sla": "10m"},
    *({"id": f"http_b{n}", "topic": "http_branch", "sla": "10m", "after": ["http_split"]} for n in range(5)),
    {"id": "http_join", "sla": "10m", "after": [f"http_b{n}" for n in range(5)]},
]}


def _fetch(client: httpx.Client, topic: str, worker: str, **body: Any) -> list[dict[str, Any]]:
    response = client.post(f"/v1/topics/{topic}/fetch-batch", json={"max_wait": "1s", "worker_id": worker, **body})
    assert response.status_code in (200, 204), response.text
    return list(response.json()["tasks"]) if response.status_code == 200 else []


def test_http_batch_workers_at_once_do_every_step_once_and_each_join_once(
        api: ApiProcess, admin: dict[str, str], postgres_backend: Backend) -> None:
    assert httpx.put(f"{api.url}/v1/workflows/http_fan", json=FAN, headers=admin).status_code == 200
    ids = [oms.start_workflow("http_fan", {"n": n}) for n in range(40)]
    done: Counter[str] = Counter()
    errors: list[str] = []

    def work(worker: str) -> None:
        with httpx.Client(base_url=api.url, headers=admin, timeout=30) as client:
            idle = 0
            while idle < 3:
                found = 0
                for topic in ("http_split", "http_branch", "http_join"):
                    tasks = _fetch(client, topic, worker, max_tasks=10, max_wait=0.3)
                    if not tasks:
                        continue
                    found += len(tasks)
                    answer = client.post("/v1/batches/complete", json={"worker_id": worker, "tasks": [
                        {"task_id": t["id"], "result": {"by": worker}} for t in tasks]})
                    if answer.status_code != 200:
                        errors.append(answer.text)
                        return
                    done.update(r["status"] for r in answer.json()["results"])
                idle = 0 if found else idle + 1

    threads = [threading.Thread(target=work, args=(f"http-w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and done == {"done": 40 * 7}, (errors, done)
    assert {oms.get_instance(i).status for i in ids} == {"done"}
    assert_consistent(ids)
    with transaction() as s:
        started = Counter(s.scalars(select(EventRow.task_id).where(EventRow.kind == "task.started")))
        joins = Counter(s.scalars(select(EventRow.instance_id).where(EventRow.kind == "task.queued",
                                                                     EventRow.step_id == "http_join")))
    assert len(started) == 40 * 7 and set(started.values()) == {1}, "a step claimed twice"
    assert set(joins.values()) == {1} and len(joins) == 40


def test_a_join_finished_in_one_request_and_a_refusal_beside_it(api: ApiProcess, admin: dict[str, str]) -> None:
    httpx.put(f"{api.url}/v1/workflows/http_fan", json=FAN, headers=admin)
    instance = oms.start_workflow("http_fan", {})
    with httpx.Client(base_url=api.url, headers=admin, timeout=30) as client:
        [split] = _fetch(client, "http_split", "w")
        assert client.post(f"/v1/tasks/{split['id']}/complete", json={"worker_id": "w"}).status_code == 200
        branches = _fetch(client, "http_branch", "w", max_tasks=100)
        assert len(branches) == 5
        items = [{"task_id": t["id"], "result": {"b": t["step_id"]}} for t in branches]
        results = client.post("/v1/batches/complete", json={"worker_id": "w", "tasks": [
            *items, items[0], {**items[1], "result": {"b": "another"}}]}).json()["results"]
    assert [r["status"] for r in results] == ["done"] * 6 + ["refused"]
    assert [r["repeat"] for r in results[:6]] == [False] * 5 + [True]  # the holder's same completion, again
    assert results[-1]["error"] == "TaskAlreadyFinished"  # another result for a finished task
    info = oms.get_instance(instance)
    assert [t.status for t in info.tasks if t.step_id == "http_join"] == ["pending"]
    assert [e.kind for e in oms.history(instance)].count("task.queued") == 1 + 5 + 1


def test_a_caller_that_disconnects_mid_batch_poll_leaves_nothing_claimed(api: ApiProcess,
                                                                         admin: dict[str, str]) -> None:
    httpx.put(f"{api.url}/v1/workflows/http_fan", json=FAN, headers=admin)
    body = json.dumps({"max_wait": "20s", "worker_id": "vanishing", "max_tasks": 10}).encode()
    with socket.create_connection(("127.0.0.1", api.port)) as raw:
        raw.sendall(b"POST /v1/topics/http_split/fetch-batch HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\n"
                    + f"Authorization: {admin['Authorization']}\r\n".encode()
                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(1)  # the poll is waiting
    time.sleep(0.5)  # ... and its caller has gone
    ids = [oms.start_workflow("http_fan", {"n": n}) for n in range(3)]
    time.sleep(1.5)
    for instance in ids:
        task = oms.get_instance(instance).tasks[0]
        assert (task.status, task.worker_id) == ("pending", None), "a step was claimed for a caller that left"
    with httpx.Client(base_url=api.url, headers=admin, timeout=30) as client:
        found = _fetch(client, "http_split", "w", max_tasks=10, max_wait="5s")
    assert sorted(t["instance_id"] for t in found) == sorted(ids) and {t["attempt"] for t in found} == {1}
