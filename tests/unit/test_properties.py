"""Generated definitions and payloads: what validates round-trips, what does not is refused cleanly."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from oms import InvalidDefinition, InvalidPayload, Workflow, get_instance, start_workflow
from oms.model.names import reserved
from oms.store.db import transaction
from oms.store.tables import EventRow

from ..conftest import Backend

#: Names users may take: not the engine's or Celery's (oms, OMS.x, celery…), nor the escalation topics.
names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z").filter(
    lambda n: not reserved(n) and n.lower() not in ("sla_violation", "sla_warning"))
durations = st.one_of(
    st.integers(1, 10**6).map(lambda n: f"{n}s"),
    st.integers(1, 10**4).map(lambda n: f"{n}m"),
    st.tuples(st.integers(1, 48), st.integers(1, 59)).map(lambda hm: f"{hm[0]}h{hm[1]}m"),
    st.integers(1, 999).map(lambda n: f"PT{n}M"),
)
steps = st.fixed_dictionaries(
    {"id": names, "sla": durations},
    optional={"retries": st.integers(0, 5), "topic": names, "on_breach": st.sampled_from(["escalate", "fail", "retry"]),
              "warn_fraction": st.floats(0.05, 0.95), "max_deliveries": st.integers(1, 10)},
)
workflows = st.builds(
    lambda wid, ss: {"id": wid, "steps": ss},
    names,
    st.lists(steps, min_size=1, max_size=6, unique_by=lambda s: s["id"]),
)
#: Characters PostgreSQL can store: no NUL, no surrogates.
TEXT = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(TEXT, max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(TEXT, max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(workflows)
def test_valid_definitions_round_trip_through_their_stored_form(spec: dict[str, Any]) -> None:
    workflow = Workflow(**spec)
    again = Workflow(**json.loads(json.dumps(workflow.spec())))
    assert again == workflow and again.digest() == workflow.digest()
    assert [s.topic for s in workflow.steps] == [s.get("topic", s["id"]) for s in spec["steps"]]


BROKEN = [(field, bad) for field in ("id", "topic") for bad in ("", "a b", "x/y", -1, None)] + [
    (field, bad) for field in ("sla", "retries") for bad in ("soon", -1, "0s", None, "-5m")
]


@given(workflows, st.sampled_from(BROKEN))
def test_broken_definitions_raise_invalid_definition_naming_the_field(spec: dict[str, Any],
                                                                     broken: tuple[str, object]) -> None:
    field, bad = broken
    spec["steps"][0][field] = bad
    if (field, bad) == ("topic", ""):  # no topic: the step id is the topic
        assert Workflow(**spec).steps[0].topic == spec["steps"][0]["id"]
        return
    with pytest.raises(InvalidDefinition, match=rf"steps\[0\](\.|: ){field}"):
        Workflow(**spec)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.dictionaries(st.text(TEXT, max_size=10), json_values, max_size=6))
def test_json_payloads_travel_unchanged(sqlite_backend: Backend, payload: dict[str, Any]) -> None:
    Workflow(id="p", steps=[{"id": "s", "sla": "1m"}]).save()
    instance_id = start_workflow("p", payload=payload)
    assert get_instance(instance_id).payload == json.loads(json.dumps(payload))


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.one_of(
    st.lists(json_values, max_size=3),
    st.text(max_size=5),
    st.integers(),
    st.dictionaries(st.text(max_size=5), st.sampled_from([math.nan, math.inf, b"bytes", {1, 2}, object()]),
                    min_size=1, max_size=2),
))
def test_non_json_payloads_are_refused_and_store_nothing(sqlite_backend: Backend, payload: object) -> None:
    Workflow(id="p", steps=[{"id": "s", "sla": "1m"}]).save()
    with transaction() as s:
        before = s.scalar(select(func.count()).select_from(EventRow))
    try:
        start_workflow("p", payload=payload)  # type: ignore[arg-type]
    except InvalidPayload:
        pass
    else:
        raise AssertionError(f"accepted {payload!r}")
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(EventRow)) == before
