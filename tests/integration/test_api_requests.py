"""Hostile requests against a real ``oms api``, on each dialect: a body that stalls is cut at its deadline, a duplicate
JSON key and an ``Idempotency-Key`` that is not printable ASCII are refused, and nothing of them is stored."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import func, select

import oms
from oms.store.db import transaction
from oms.store.tables import instances

from ..conftest import EPA, Backend
from .test_api_server import ApiProcess, admin_headers

pytestmark = pytest.mark.integration

#: The body deadline these tests give the API (OMS_API_BODY_TIMEOUT), short to keep them quick.
BODY_TIMEOUT = 1.5


@pytest.fixture
def admin(backend: Backend) -> dict[str, str]:
    return admin_headers()


@pytest.fixture
def api(backend: Backend, admin: dict[str, str], tmp_path: Path) -> Iterator[ApiProcess]:
    """``oms api`` on the dialect, with the EPA workflow saved and a short body deadline."""
    oms.Workflow(**EPA).save()
    process = ApiProcess(backend, tmp_path, env={"OMS_API_BODY_TIMEOUT": str(BODY_TIMEOUT)})
    yield process
    process.stop()


def _stored() -> int:
    with transaction() as session:
        return int(session.scalar(select(func.count()).select_from(instances)) or 0)


def _exchange(api: ApiProcess, request: bytes, wait: float = 10) -> tuple[bytes, float, bool]:
    """Send ``request`` raw and read until the server closes: its answer, the seconds it took, whether it closed."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=wait) as raw:
        began = time.monotonic()
        raw.sendall(request)
        answer = b""
        try:
            while chunk := raw.recv(65536):
                answer += chunk
            closed = True
        except TimeoutError:
            closed = False
        return answer, time.monotonic() - began, closed


def _head(api: ApiProcess, admin: dict[str, str], path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\nAuthorization: {admin['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def test_a_body_that_stalls_is_408_at_its_deadline_and_the_connection_closed(
        api: ApiProcess, admin: dict[str, str]) -> None:
    for path in ["/v1/workflows/epa_waste_reg/instances", "/v1/topics/validate_tax_id/fetch"]:
        answer, took, closed = _exchange(api, _head(api, admin, path, 100) + b'{"payload"')  # 10 of the 100 bytes
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "RequestTimeout"
        assert b"connection: close" in answer.lower()
        assert closed and BODY_TIMEOUT <= took < BODY_TIMEOUT + 3
    assert _stored() == 0


def test_the_deadline_is_for_the_body_only_a_long_poll_waits_longer(api: ApiProcess, admin: dict[str, str]) -> None:
    """The fetch watches for the caller leaving once its body is read: that wait is not cut at the deadline."""
    body = json.dumps({"max_wait": BODY_TIMEOUT + 1.5, "worker_id": "w1"}).encode()
    answer, took, _ = _exchange(api, _head(api, admin, "/v1/topics/validate_tax_id/fetch", len(body)) + body,
                                wait=BODY_TIMEOUT + 2.5)
    assert answer.startswith(b"HTTP/1.1 204 "), answer
    assert took >= BODY_TIMEOUT + 1.5


def test_a_body_sent_slowly_within_the_deadline_is_served(api: ApiProcess, admin: dict[str, str]) -> None:
    body = json.dumps({"payload": {"form_id": "F-1"}}).encode()
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as raw:
        raw.sendall(_head(api, admin, "/v1/workflows/epa_waste_reg/instances", len(body)) + body[:5])
        time.sleep(BODY_TIMEOUT / 2)
        raw.sendall(body[5:])
        assert raw.recv(65536).startswith(b"HTTP/1.1 201 ")
    assert _stored() == 1


#: Bodies with a key twice, on each route that takes JSON, and the key the refusal names.
DUPLICATES = [
    ("/v1/workflows/epa_waste_reg/instances", '{"payload": {"b": 1, "b": 2}}', "b"),
    ("/v1/workflows/epa_waste_reg/instances", '{"payload": {"a": [{"x": 1, "y": 2, "x": 3}]}}', "x"),
    ("/v1/workflows/epa_waste_reg/instances", '{"payload": {}, "payload": {"b": 2}}', "payload"),
    ("/v1/topics/validate_tax_id/fetch", '{"max_wait": 0, "max_wait": 1}', "max_wait"),
    ("/v1/tasks/tk-00000000000000000000000000000000/complete", '{"worker_id": "w", "worker_id": "v"}', "worker_id"),
    ("/v1/instances/wf-00000000000000000000000000000000/signals/go", '{"data": {"k": 1, "k": 1}}', "k"),
    ("/v1/channels", '{"name": "a", "name": "b", "email": "x@example.org"}', "name"),
]


def test_a_duplicate_key_anywhere_in_a_body_is_400_and_nothing_is_stored(
        api: ApiProcess, admin: dict[str, str]) -> None:
    for path, body, key in DUPLICATES:
        response = httpx.post(api.url + path, content=body, headers={**admin, "Content-Type": "application/json"})
        assert response.status_code == 400, (path, response.text)
        assert response.json() == {"error": "MalformedJson", "detail": f"duplicate key {key!r} in the request body"}
    assert _stored() == 0


def test_a_body_that_is_not_utf8_is_400(api: ApiProcess, admin: dict[str, str]) -> None:
    response = httpx.post(api.url + "/v1/workflows/epa_waste_reg/instances",
                          content='{"payload": {}}'.encode("utf-16"),
                          headers={**admin, "Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "MalformedJson", response.text
    assert _stored() == 0


def test_a_list_filter_no_instance_could_hold_is_422_not_500(api: ApiProcess, admin: dict[str, str]) -> None:
    # a NUL in a filter reached PostgreSQL, which refuses it: CI's schemathesis run found the 500
    started = httpx.post(api.url + "/v1/workflows/epa_waste_reg/instances",
                         json={"payload": {}, "business_key": "F8700-12-42"}, headers=admin)
    assert started.status_code == 201, started.text
    for query in ["business_key=F8700%00", "business_key=%20", "business_key=" + "x" * 256,
                  "workflow=epa%00", "workflow=-epa"]:
        response = httpx.get(f"{api.url}/v1/instances?{query}&light=yellow", headers=admin)
        assert response.status_code == 422, (query, response.text)
        assert response.json()["error"] == "InvalidArgument", response.text
    forged = base64.urlsafe_b64encode(json.dumps(["2026-12-06T10:00:00+00:00", "wf-\x00"]).encode()).decode()
    for path in [f"/v1/instances?cursor={forged}", "/v1/sla/report?since=2026-11-01&until=2026-12-01&workflow=epa%00"]:
        response = httpx.get(api.url + path, headers=admin)
        assert response.status_code == 422 and response.json()["error"] == "InvalidArgument", (path, response.text)
    listed = httpx.get(f"{api.url}/v1/instances?business_key=F8700-12-42&workflow=epa_waste_reg", headers=admin)
    assert [i["id"] for i in listed.json()["instances"]] == [started.json()["instance_id"]], listed.text


def _start(api: ApiProcess, admin: dict[str, str], key: bytes) -> httpx.Response:
    return httpx.post(api.url + "/v1/workflows/epa_waste_reg/instances", json={"payload": {"form_id": "F-1"}},
                      headers=[*admin.items(), ("Idempotency-Key", key)])


def test_an_idempotency_key_that_is_not_printable_ascii_is_400_and_nothing_is_stored(
        api: ApiProcess, admin: dict[str, str]) -> None:
    # (other control characters and DEL never reach the API: its HTTP parser refuses the request, 400 in text)
    for key in ["été".encode(), "été".encode("latin-1"), b"a\tb", b"x" * 256, b""]:
        response = _start(api, admin, key)
        assert response.status_code == 400, (key, response.text)
        assert response.json()["error"] == "InvalidHeader"
    assert _stored() == 0


def test_a_printable_ascii_key_is_kept_as_sent(api: ApiProcess, admin: dict[str, str]) -> None:
    for key in [b"portal-req-42", b"a b ~!", b"x" * 255]:
        first, again = _start(api, admin, key), _start(api, admin, key)
        assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
        assert first.json() == again.json()
    with transaction() as session:
        stored = set(session.scalars(select(instances.c.idempotency_key)))
    assert stored == {"portal-req-42", "a b ~!", "x" * 255}


def test_the_holder_repeating_its_completion_hears_200_repeat_and_anyone_else_409(
        api: ApiProcess, admin: dict[str, str]) -> None:
    """A worker whose answer was lost sends its completion again: its success, once; nothing is done twice."""
    instance = httpx.post(api.url + "/v1/workflows/epa_waste_reg/instances", json={"payload": {}},
                          headers=admin).json()["instance_id"]

    def call(task: dict[str, Any], what: str, **body: Any) -> httpx.Response:
        return httpx.post(f"{api.url}/v1/tasks/{task['id']}/{what}", json=body, headers=admin)

    def fetch(topic: str) -> dict[str, Any]:
        found = httpx.post(f"{api.url}/v1/topics/{topic}/fetch", json={"max_wait": 5, "worker_id": "w1"},
                           headers=admin)
        assert found.status_code == 200, found.text
        return dict(found.json())

    form = fetch("collect_form")
    assert call(form, "complete", worker_id="w1", result={"f": 1}).json() == {"status": "done", "repeat": False}
    assert call(form, "complete", worker_id="w1", result={"f": 1}).json() == {"status": "done", "repeat": True}
    for other in ({"worker_id": "w2", "result": {"f": 1}}, {"worker_id": "w1", "result": {"f": 2}},
                  {"worker_id": "w1"}):
        refused = call(form, "complete", **other)
        assert (refused.status_code, refused.json()["error"]) == (409, "TaskAlreadyFinished"), other
    tax = fetch("validate_tax_id")  # the instance has moved on
    assert call(tax, "fail", worker_id="w1", reason="IRS down").json() == {"status": "failed", "repeat": False}
    assert call(tax, "fail", worker_id="w1", reason="IRS down").json() == {"status": "failed", "repeat": True}
    assert call(tax, "fail", worker_id="w1", reason="other").status_code == 409
    assert httpx.get(f"{api.url}/v1/instances/{instance}", headers=admin).json()["status"] == "failed"
    assert call(form, "complete", worker_id="w1", result={"f": 1}).json() == {"status": "done", "repeat": True}
    kinds = [e["kind"] for e in httpx.get(f"{api.url}/v1/instances/{instance}/history", headers=admin).json()]
    assert kinds.count("task.done") == 1 and kinds.count("task.failed") == 1


def test_a_chunked_body_over_the_limit_is_413_as_it_arrives(api: ApiProcess, admin: dict[str, str]) -> None:
    """No Content-Length to refuse it by: it is counted as it comes, and cut past the limit (not a 400)."""
    chunk = b" " * 65536
    request = (f"POST /v1/workflows/epa_waste_reg/instances HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n"
               f"Authorization: {admin['Authorization']}\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\n\r\n").encode()
    # one byte over the limit (OMS_MAX_PAYLOAD_BYTES plus 64 KiB), and no last chunk: the answer cannot wait for it
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"1\r\n \r\n"
    answer, _, _ = _exchange(api, request + body)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "PayloadTooLarge"
    assert _stored() == 0
