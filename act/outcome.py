"""What a handler's return value means: success with an optional result, or failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oms.engine import checks
from oms.exceptions import InvalidPayload

from .exceptions import InvalidArgument


@dataclass(frozen=True)
class Returned:
    ok: bool
    result: dict[str, Any] | None = None
    reason: str = ""
    #: The handler handed the step to a person: its clock pauses with this reason, and the step stays open.
    pause: str | None = None


def failure(reason: str) -> Returned:
    """A failed attempt whose reason can always be recorded (see :func:`oms.checks.storable_reason`)."""
    return Returned(False, reason=checks.storable_reason(reason))


def interpret(value: Any) -> Returned:
    """``"success"``/``None`` succeed, a dict succeeds with it as result, ``"fail"`` fails; ``{"pause": reason}``
    (that key alone) pauses the step's clock and leaves it open for someone to complete; a :class:`Returned`
    (from the engine's own handlers, such as a task step's) is taken as it is."""
    if isinstance(value, Returned):
        return value
    if value is None or value == "success":
        return Returned(True)
    if value == "fail":
        return failure("handler returned 'fail'")
    if isinstance(value, dict) and set(value) == {"pause"}:
        try:
            return Returned(True, pause=checks.check_reason(value["pause"], "a pause's reason"))
        except InvalidArgument as exc:
            return failure(f"the handler's pause cannot be stored: {exc}")
    if isinstance(value, dict):
        try:
            return Returned(True, checks.check_result(value))
        except InvalidPayload as exc:
            return failure(f"the handler's result cannot be stored: {exc}")
    expected = "expected 'success', 'fail', None or a dict"
    return failure(f"handler returned {type(value).__name__} {value!r:.80}; {expected}")
