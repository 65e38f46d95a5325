"""The page's board (``oms.board``) with the clock passed in: open steps by the light every view shows, breaches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from oms import Workflow, scan_sla
from oms.api import board as board_api
from oms.api import create_app
from oms.engine import door
from oms.engine.starts import start_instance
from oms.ops.board import board
from oms.store import tokens
from oms.store.catalog import load_definition
from oms.store.db import transaction

from ..conftest import Backend

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)


def _start(workflow_id: str, now: datetime) -> str:
    with transaction() as s:
        definition, version = load_definition(s, workflow_id)
        instance, _ = start_instance(s, definition, version, {}, now)
    return instance.id


def _counts(now: datetime) -> dict[str, dict[str, tuple[int, int, int, int]]]:
    return {w.id: {s.id: (s.green, s.yellow, s.red, s.breaches_24h) for s in w.steps} for w in board(now)}


def test_open_steps_by_light_read_from_the_clock_and_breaches_of_the_last_day(backend: Backend) -> None:
    Workflow(id="w", steps=[{"id": "a", "sla": "10m", "warn_at": "5m"}, {"id": "b", "sla": "1m"}]).save()
    Workflow(id="idle", steps=[{"id": "x", "sla": "1m"}]).save()
    for minutes in (0, 3, 8):
        _start("w", T0 + minutes * M)
    now = T0 + 9 * M  # opened 9, 6 and 1 minute(s) ago: not scanned yet, the clock alone says it
    assert _counts(now) == {"idle": {"x": (0, 0, 0, 0)}, "w": {"a": (1, 2, 0, 0), "b": (0, 0, 0, 0)}}
    assert _counts(T0 + 11 * M)["w"]["a"] == (1, 1, 1, 1)  # the first one is past its deadline: red, a breach

    scan_sla(T0 + 11 * M)
    late = _start("w", T0 + 12 * M)
    task = door.claim_step(late, 0, "w1", now=T0 + 12 * M)
    door.extend(task.id, "1h", now=T0 + 12 * M)
    door.complete(task, None, now=T0 + 13 * M)  # a done, b queued at 13m with a 1m SLA
    # a's open attempts: 15, 12 and 7 minutes old (the fourth is done, in time); b is a minute past its deadline
    assert _counts(T0 + 15 * M)["w"] == {"a": (0, 1, 2, 2), "b": (0, 0, 1, 1)}
    # a day later the open steps are still red, but only breaches of the last 24 h count
    assert _counts(T0 + 25 * H)["w"] == {"a": (0, 0, 3, 0), "b": (0, 0, 1, 0)}


def test_the_engines_own_workflows_are_not_on_the_board(backend: Backend) -> None:
    Workflow(id="w", steps=[{"id": "a", "sla": "1m"}]).save()
    _start("w", T0)
    scan_sla(T0 + 2 * M)  # escalates: an oms.sla_violation instance exists now
    assert [w.id for w in board(T0 + 3 * M)] == ["w"]


def test_the_board_over_http_is_for_readers_and_shaped_for_the_page(backend: Backend) -> None:
    Workflow(id="w", steps=[{"id": "a", "sla": "10m"}]).save()
    _start("w", datetime.now(UTC))
    secrets = {role: tokens.create(role, name=f"board-{role}", topics=["a"] if role == "worker" else None)[0]
               for role in ("admin", "starter", "reader", "worker")}
    with TestClient(create_app()) as client:
        assert client.get("/v1/board").json()["error"] == "Unauthorized"
        assert client.get("/v1/board", headers={"Authorization": f"Bearer {secrets['worker']}"}).status_code == 403
        for role in ("admin", "starter", "reader"):
            response = client.get("/v1/board", headers={"Authorization": f"Bearer {secrets[role]}"})
            assert response.json() == [{"id": "w", "version": 1, "steps": [
                {"id": "a", "green": 1, "yellow": 0, "red": 0, "breaches_24h": 0}]}]
        assert "/v1/board" in client.get("/openapi.json").json()["paths"]


def test_one_reading_of_the_board_serves_every_page_for_a_second(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    Workflow(id="w", steps=[{"id": "a", "sla": "10m"}]).save()
    secret, _ = tokens.create("reader", name="board-cache")
    auth = {"Authorization": f"Bearer {secret}"}

    def green(client: TestClient) -> int:
        return int(client.get("/v1/board", headers=auth).json()[0]["steps"][0]["green"])

    with TestClient(create_app()) as client:
        assert green(client) == 0
        _start("w", datetime.now(UTC))
        assert green(client) == 0  # the same reading, within FRESH_FOR
        monkeypatch.setattr(board_api, "FRESH_FOR", 0.0)
        assert green(client) == 1
