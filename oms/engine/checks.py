"""What the engine accepts from workers and callers: results, reasons, topics, durations, worker ids.

Each check returns the value as it is stored, or raises a typed error naming the
argument (:class:`~oms.exceptions.InvalidArgument`, :class:`~oms.exceptions.InvalidPayload`),
before anything is written.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..durations import parse_duration
from ..exceptions import InvalidArgument
from ..model.jsonvalue import check_text, json_object, storable_text
from ..model.names import check_worker_id, user_name
from ..settings import get_settings

__all__ = ["check_key", "check_reason", "check_result", "check_topic", "check_worker_id", "seconds", "storable_reason"]


def check_topic(topic: str) -> str:
    """``topic`` if it can be a queue name users may take, else :class:`InvalidArgument` naming it."""
    return user_name(topic, "topic")


def check_reason(reason: object, what: str = "a failure's reason") -> str:
    """A reason as stored: non-empty, storable, at most ``OMS_MAX_REASON_CHARS``; else :class:`InvalidArgument`."""
    return check_text(reason, what, get_settings().max_reason_chars, "OMS_MAX_REASON_CHARS")


def storable_reason(text: str) -> str:
    """A handler's failure text as it can always be recorded: cut to ``OMS_MAX_REASON_CHARS``, made storable.

    A handler's error text is the handler's (an exception message with a NUL in it,
    a 20 MB repr): the attempt fails once with it, rather than not at all.
    """
    return storable_text(text, get_settings().max_reason_chars) or "(no reason given)"


def seconds(value: str | float | timedelta, what: str, *, positive: bool = False) -> float:
    """A duration argument in seconds, or :class:`InvalidArgument` naming ``what``."""
    try:
        found = parse_duration(value).total_seconds()
    except ValueError as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    if found < 0:
        raise InvalidArgument(f"{what} must not be negative, got {value!r}")
    if positive and found == 0:
        raise InvalidArgument(f"{what} must be positive, got {value!r}")
    return found


def check_key(key: object, what: str = "idempotency key") -> str:
    """A caller's key (idempotency key, business key) as stored: printable text of 1 to 255 characters, else
    :class:`InvalidArgument`."""
    if not isinstance(key, str) or not key.strip() or len(key) > 255 or not key.isprintable():
        raise InvalidArgument(f"{what} {key!r:.80}: expected printable text of 1 to 255 characters")
    return key


def check_result(result: Any) -> dict[str, Any] | None:
    """A step's result as stored: ``None`` or a JSON object within ``OMS_MAX_PAYLOAD_BYTES``."""
    if result is None:
        return None
    settings = get_settings()
    return json_object(result, what="result", max_bytes=settings.max_payload_bytes,
                       max_depth=settings.max_payload_depth)
