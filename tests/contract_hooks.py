"""Schemathesis hooks of ``tests/integration/test_contract.py`` (loaded by the CLI through its config's ``hooks``).

A fetch is a long poll: a valid ``max_wait`` (up to 300 s) is answered after that
long when no step is offered, so a valid wait over a second is made a second before
the call, and the run stays minutes long. A duration written as text is bounded too
(``max_wait`` 300 s, a lease a year), which its pattern cannot say (the operation's
description does): a valid text duration is made a short one, so that what the
document allows is what is sent. Values the document refuses are sent as drawn, so
every check still applies.

No NUL may be stored at any depth of a payload, a result or a signal's data, but the
document says so (as a pattern) only for the object's own keys and values: a
recursive ``JsonValue`` schema would say it everywhere, and openapi-python-client
cannot read one (it drops every operation that uses it). So the NULs drawn deeper,
where the document leaves any JSON, are taken out before sending; the operations'
descriptions say the rule.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis

from oms.api.params import DURATION_TEXT
from oms.api.tasks import MAX_WAIT_S

#: What each duration of a body becomes when valid (and over a second, for a wait): operation -> field -> value.
SHORT = {"fetch_task": {"max_wait": "1s", "lease": "5m"}, "fetch_tasks": {"max_wait": "1s", "lease": "5m"},
         "extend_task": {"lease": "5m"}}
_TEXT = re.compile(DURATION_TEXT)
_ZERO = re.compile(r"^[0.a-zA-Z]*$")


def _storable(value: Any) -> Any:
    """``value`` with every NUL taken out of its strings and keys, at every depth."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    return value


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    """Take the NULs out of what a JSON object field holds below its own values (see the module's docstring)."""
    if isinstance(body, dict):
        for held in body.values():
            if isinstance(held, dict):
                for key, value in held.items():
                    if isinstance(value, dict | list):
                        held[key] = _storable(value)
    return body


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    fields = SHORT.get(case.operation.definition.raw.get("operationId"), {})
    if not isinstance(case.body, dict):
        return
    for name, short in fields.items():
        value = case.body.get(name)
        if isinstance(value, str) and _TEXT.search(value) and not (name == "lease" and _ZERO.match(value)):
            case.body[name] = short
        elif name == "max_wait" and type(value) in (int, float) and 1 < value <= MAX_WAIT_S:
            case.body[name] = 1
