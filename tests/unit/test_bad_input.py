"""Bad input meets a typed error at the edge and changes nothing (issue 12, defects 4.3 to 4.7).

Each test here failed before its fix: most of these inputs were stored, or raised
an untyped error (OverflowError, RecursionError, DataError, ProgrammingError)
from deep inside. Run on SQLite here and on PostgreSQL by
``tests/integration/test_on_postgres.py``: NUL characters and lone surrogates only
fail to store on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import oms
from act import complete_task, extend_lease, fail_task, fetch_task, subscribe
from oms import InvalidDefinition, InvalidPayload, Workflow, cancel_workflow, get_instance, start_workflow
from oms.engine import door
from oms.exceptions import InvalidArgument
from oms.store.db import transaction
from oms.store.tables import DefinitionRow, EventRow, InstanceRow

from ..conftest import Backend

STEP = [{"id": "s", "sla": "1m"}]


def _stored() -> tuple[int, int, int]:
    with transaction() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) or 0  # type: ignore[return-value]
                     for t in (DefinitionRow, InstanceRow, EventRow))


def _nested(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        node["a"] = {}
        node = node["a"]
    return root


@pytest.mark.parametrize(("spec", "message"), [
    ({"id": "abc\n", "steps": STEP}, "workflow id 'abc\\\\n' cannot be a queue name"),
    ({"id": "a" * 128 + "\n", "steps": STEP}, "is 129 characters long: at most 128"),
    ({"id": "a" * 129, "steps": STEP}, "is 129 characters long: at most 128"),
    ({"id": "w", "steps": [{"id": "s", "sla": "1m", "topic": "s\n"}]}, "topic 's\\\\n' cannot be a queue name"),
    ({"id": "OMS.x", "steps": STEP}, "workflow id 'OMS.x' is reserved"),
    ({"id": "oms", "steps": STEP}, "workflow id 'oms' is reserved"),
    ({"id": "w", "steps": [{"id": "s", "sla": "1m", "topic": "OMS"}]}, "topic 'OMS' is reserved"),
    ({"id": "w", "steps": [{"id": "oms", "sla": "1m"}]}, "topic 'oms' is reserved"),
    ({"id": "w", "steps": [{"id": "s", "sla": "1m", "topic": "Celery"}]}, "topic 'Celery' is reserved"),
    ({"id": "w", "steps": [{"id": "s", "sla": "1m", "topic": "w1.celery.pidbox"}]}, "is reserved"),
    ({"id": "w", "steps": [{"id": "s", "sla": "1m", "topic": "SLA_violation"}]}, "carries the engine's escalations"),
    ({"id": "w", "steps": [{"id": "s", "sla": float("inf")}]}, "out of range: at most 365d"),
    ({"id": "w", "steps": [{"id": "s", "sla": "1000000000d"}]}, "out of range: at most 365d"),
    ({"id": "w", "steps": STEP, "sla": "3000000d"}, "sla: duration '3000000d' is out of range"),
    ({"id": "w", "steps": [{"id": "s", "sla": "1m", "retry_backoff": 1e300}]}, "out of range"),
    ({"id": "w", "steps": STEP, "description": "a\x00b"}, "holds a NUL character at position 1"),
    ({"id": "w", "steps": STEP, "description": "\ud800"}, "holds a lone surrogate \\(U\\+D800\\)"),
    ({"id": "w", "steps": STEP, "description": "x" * (30 * 2**20)}, "over the limit of 10000 \\(OMS_MAX_DESC"),
    ({"id": "w", "steps": [{"id": f"s{i}", "sla": "1m"} for i in range(20_000)]},
     "at most 200 steps \\(OMS_MAX_STEPS\\), this one 20000"),
])
def test_definitions_that_could_not_be_stored_or_used_are_refused(backend: Backend, spec: dict[str, Any],
                                                                 message: str) -> None:
    with pytest.raises(InvalidDefinition, match=message):
        Workflow(**spec).save()
    assert _stored() == (0, 0, 0)


def test_ids_and_names_are_matched_in_full_and_typed(backend: Backend) -> None:
    Workflow(id="w", steps=STEP).save()
    before = _stored()
    for call, match in [
        (lambda: fetch_task("x\n", max_wait=0), "topic 'x\\\\n' cannot be a queue name"),
        (lambda: fetch_task("a b", max_wait=0), "topic 'a b' cannot be a queue name"),
        (lambda: fetch_task("OMS", max_wait=0), "topic 'OMS' is reserved"),
        (lambda: subscribe("oms"), "topic 'oms' is reserved"),
        (lambda: complete_task("tk-" + "0" * 32 + "\n"), "malformed task id"),
        (lambda: get_instance("wf-" + "0" * 32 + "\n"), "malformed instance id"),
        (lambda: start_workflow(123), "workflow id must be a string, not int"),  # type: ignore[arg-type]
        (lambda: start_workflow("a" * 200), "is 200 characters long: at most 128"),
        (lambda: start_workflow("oms.sla_violation"), "is reserved"),
        (lambda: Workflow.load(123), "workflow id must be a string"),  # type: ignore[arg-type]
        (lambda: fetch_task("s", max_wait=0, worker_id="w" * 300), "worker id 'wwww"),
        (lambda: fetch_task("s", max_wait=0, worker_id="w\x00"), "worker id 'w\\\\x00'"),
        (lambda: fetch_task("s", max_wait=1e300), "max_wait: duration 1e\\+300 is out of range"),
        (lambda: fetch_task("s", lease="3000000d"), "lease: duration '3000000d' is out of range"),
    ]:
        with pytest.raises(InvalidArgument, match=match):
            call()
    assert _stored() == before


@pytest.mark.parametrize(("payload", "message"), [
    ({"a": "\x00"}, "payload\\['a'\\] holds a NUL character at position 0"),
    ({"a": ["ok", {"b": "x\ud800"}]}, "payload\\['a'\\]\\[1\\]\\['b'\\] holds a lone surrogate"),
    ({"k\x00": 1}, "payload has a key holding a NUL character"),
    (_nested(1000), "payload is nested deeper than 64 levels"),
])
def test_payloads_that_cannot_be_stored_are_refused_and_store_nothing(backend: Backend, payload: dict[str, Any],
                                                                      message: str) -> None:
    Workflow(id="w", steps=STEP).save()
    before = _stored()
    with pytest.raises(InvalidPayload, match=message):
        start_workflow("w", payload=payload)
    with pytest.raises(InvalidPayload, match=message):
        oms.start_workflows("w", [{}, payload])
    assert _stored() == before
    assert start_workflow("w", payload=_nested(60)).startswith("wf-")


def test_results_reasons_and_leases_that_cannot_be_stored_are_refused_and_change_nothing(backend: Backend) -> None:
    Workflow(id="w", steps=[{"id": "s", "sla": "1m", "retries": 1}]).save()
    instance_id = start_workflow("w", payload={})
    task = fetch_task("s", max_wait="2s")
    assert task is not None
    before = _stored()
    for call, error, match in [
        (lambda: complete_task(task.id, {"r": "\x00"}), InvalidPayload, "result\\['r'\\] holds a NUL"),
        (lambda: complete_task(task.id, _nested(1000)), InvalidPayload, "result is nested deeper"),
        (lambda: fail_task(task.id, "IRS\x00"), InvalidArgument, "reason holds a NUL character"),
        (lambda: fail_task(task.id, "x" * (20 * 2**20)), InvalidArgument, "over the limit of 10000"),
        (lambda: fail_task(task.id, "   "), InvalidArgument, "must be a non-empty string"),
        (lambda: extend_lease(task.id, "3000000d"), InvalidArgument, "out of range: at most 365d"),
        (lambda: extend_lease(task.id, float("inf")), InvalidArgument, "out of range"),
        (lambda: cancel_workflow(instance_id, "dup\ud800"), InvalidArgument, "holds a lone surrogate"),
    ]:
        with pytest.raises(error, match=match):
            call()
    assert _stored() == before
    complete_task(task.id, {"r": "fine"})
    assert get_instance(instance_id).status == "done"


def test_yaml_definitions_refuse_duplicate_keys_and_base_60_numbers(tmp_path: Path) -> None:
    (tmp_path / "dup.yaml").write_text("id: a\nid: b\nsteps:\n  - {id: s, sla: 1m}\n")
    with pytest.raises(InvalidDefinition, match="dup.yaml is not valid yaml: duplicate key 'id'"):
        Workflow.from_file(tmp_path / "dup.yaml")
    (tmp_path / "dup.json").write_text('{"id": "a", "steps": [], "steps": [{"id": "s", "sla": "1m"}]}')
    with pytest.raises(InvalidDefinition, match="dup.json is not valid json: duplicate key 'steps'"):
        Workflow.from_file(tmp_path / "dup.json")
    (tmp_path / "sexagesimal.yaml").write_text("id: a\nsteps:\n  - {id: s, sla: 1:30}\n")
    with pytest.raises(InvalidDefinition, match="not a duration: '1:30'"):
        Workflow.from_file(tmp_path / "sexagesimal.yaml")
    (tmp_path / "latin1.yaml").write_bytes("id: caf\xe9\nsteps: []\n".encode("latin-1"))
    with pytest.raises(InvalidDefinition, match="latin1.yaml is not UTF-8 text"):
        Workflow.from_file(tmp_path / "latin1.yaml")
    (tmp_path / "deep.json").write_text('{"id": "a", "steps": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(InvalidDefinition, match="deep.json is nested too deeply"):
        Workflow.from_file(tmp_path / "deep.json")
    (tmp_path / "ok.yaml").write_text("id: a\nsteps:\n  - {id: s, sla: 90s, retries: 3}\n")
    assert Workflow.from_file(tmp_path / "ok.yaml").steps[0].sla == timedelta(seconds=90)


@pytest.fixture
def limits(backend: Backend) -> Any:
    """Limits changed by the test; the backend's own settings again afterwards."""
    def configure(**limits: int) -> None:
        oms.configure(database_url=backend.database_url, broker_url=backend.broker_url, home=backend.home, **limits)

    yield configure
    configure()


def test_limits_are_settings(backend: Backend, limits: Any) -> None:
    limits(max_steps=2, max_description_chars=5, max_reason_chars=3, max_payload_depth=2)
    with pytest.raises(InvalidDefinition, match="at most 2 steps"):
        Workflow(id="w", steps=[{"id": f"s{i}", "sla": "1m"} for i in range(3)])
    with pytest.raises(InvalidDefinition, match="over the limit of 5"):
        Workflow(id="w", steps=STEP, description="123456")
    Workflow(id="w", steps=STEP).save()
    with pytest.raises(InvalidPayload, match="nested deeper than 2 levels"):
        start_workflow("w", payload={"a": {"b": {}}})
    instance_id = start_workflow("w", payload={"a": {}})
    task = door.claim_step(instance_id, 0, "w1")
    assert task is not None
    with pytest.raises(InvalidArgument, match="over the limit of 3 \\(OMS_MAX_REASON_CHARS\\)"):
        door.fail(task, "four")
    # a definition saved under higher limits still loads and runs: the limits hold for new definitions
    limits(max_steps=200)
    Workflow(id="big", steps=[{"id": f"s{i}", "sla": "1m"} for i in range(3)]).save()
    limits(max_steps=1)
    assert get_instance(start_workflow("big", payload={})).status == "running"
