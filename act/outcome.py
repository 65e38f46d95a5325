"""What a handler's return value means: success with an optional result, or failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oms import InvalidPayload, door
from oms.exceptions import InvalidArgument
from oms.jsonvalue import storable_text
from oms.settings import get_settings


@dataclass(frozen=True)
class Outcome:
    ok: bool
    result: dict[str, Any] | None = None
    reason: str = ""
    #: The handler handed the step to a person: its clock pauses with this reason, and the step stays open.
    pause: str | None = None


def failure(reason: str) -> Outcome:
    """A failed attempt whose reason can always be recorded: cut to ``OMS_MAX_REASON_CHARS``, made storable.

    A handler's error text is the handler's (an exception message with a NUL in it,
    a 20 MB repr): the attempt fails once with it, rather than not at all.
    """
    return Outcome(False, reason=storable_text(reason, get_settings().max_reason_chars) or "(no reason given)")


def interpret(value: Any) -> Outcome:
    """``"success"``/``None`` succeed, a dict succeeds with it as result, ``"fail"`` fails; ``{"pause": reason}``
    (that key alone) pauses the step's clock and leaves it open for someone to complete."""
    if value is None or value == "success":
        return Outcome(True)
    if value == "fail":
        return failure("handler returned 'fail'")
    if isinstance(value, dict) and set(value) == {"pause"}:
        try:
            return Outcome(True, pause=door.check_reason(value["pause"], "a pause's reason"))
        except InvalidArgument as exc:
            return failure(f"the handler's pause cannot be stored: {exc}")
    if isinstance(value, dict):
        try:
            return Outcome(True, door.check_result(value))
        except InvalidPayload as exc:
            return failure(f"the handler's result cannot be stored: {exc}")
    expected = "expected 'success', 'fail', None or a dict"
    return failure(f"handler returned {type(value).__name__} {value!r:.80}; {expected}")
