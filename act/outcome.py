"""What a handler's return value means: success with an optional result, or failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oms import InvalidPayload, door


@dataclass(frozen=True)
class Outcome:
    ok: bool
    result: dict[str, Any] | None = None
    reason: str = ""


def interpret(value: Any) -> Outcome:
    """``"success"``/``None`` succeed, a dict succeeds with it as result, ``"fail"`` fails."""
    if value is None or value == "success":
        return Outcome(True)
    if value == "fail":
        return Outcome(False, reason="handler returned 'fail'")
    if isinstance(value, dict):
        try:
            return Outcome(True, door.check_result(value))
        except InvalidPayload as exc:
            return Outcome(False, reason=str(exc))
    expected = "expected 'success', 'fail', None or a dict"
    return Outcome(False, reason=f"handler returned {type(value).__name__} {value!r:.80}; {expected}")
