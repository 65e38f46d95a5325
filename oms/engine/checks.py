"""What the engine accepts from workers and callers: results, reasons, topics, durations, worker ids.

Each check returns the value as it is stored, or raises a typed error naming the
argument (:class:`~oms.exceptions.InvalidArgument`, :class:`~oms.exceptions.InvalidPayload`),
before anything is written.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from ..durations import parse_duration
from ..exceptions import InvalidArgument
from ..model.jsonvalue import check_text, json_object, storable_text
from ..model.names import check_worker_id, user_name
from ..settings import get_settings

__all__ = ["KEY_PATTERN", "MAX_BATCH", "MAX_KEY", "MIN_POSITIVE_S", "check_batch", "check_key", "check_reason",
           "check_result", "check_topic", "check_worker_id", "seconds", "storable_reason"]


#: The most tasks one batch call claims or finishes (``fetch_tasks``' ``max_tasks``, ``complete_tasks``' items).
MAX_BATCH = 1000


def check_batch(count: object, what: str) -> int:
    """A batch's size: a whole number from 1 to :data:`MAX_BATCH`, else :class:`InvalidArgument` naming ``what``."""
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_BATCH:
        raise InvalidArgument(f"{what} must be a whole number from 1 to {MAX_BATCH}, got {count!r:.80}")
    return count


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


#: The shortest duration that must be positive (a lease) may be: a millisecond (less would round to nothing).
MIN_POSITIVE_S = 0.001


def seconds(value: str | float | timedelta, what: str, *, positive: bool = False) -> float:
    """A duration argument in seconds, or :class:`InvalidArgument` naming ``what``."""
    try:
        found = parse_duration(value).total_seconds()
    except ValueError as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    if found < 0:
        raise InvalidArgument(f"{what} must not be negative, got {value!r}")
    if positive and found < MIN_POSITIVE_S:
        raise InvalidArgument(f"{what} must be positive (at least 1ms), got {value!r}")
    return found


#: Characters no key holds: control characters (C0, DEL, C1). (Nor lone surrogates, which JSON Schema's patterns
#: cannot name: checked apart.)
_CONTROL = "\\x00-\\x1f\\x7f-\\x9f"
#: A caller's key (matched in full, 1 to 255 characters): no control character, and something besides spaces. The
#: same text is the OpenAPI document's pattern.
KEY_PATTERN = f"^[^{_CONTROL}]*[^\\s{_CONTROL}][^{_CONTROL}]*$"
MAX_KEY = 255
_KEY = re.compile(KEY_PATTERN)
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def check_key(key: object, what: str = "idempotency key") -> str:
    """A caller's key (idempotency key, business key) as stored: printable text of 1 to 255 characters (no control
    character, not only spaces), else :class:`InvalidArgument`."""
    if not isinstance(key, str) or len(key) > MAX_KEY or not _KEY.fullmatch(key) or _SURROGATE.search(key):
        raise InvalidArgument(f"{what} {key!r:.80}: expected printable text of 1 to {MAX_KEY} characters")
    return key


def check_result(result: Any) -> dict[str, Any] | None:
    """A step's result as stored: ``None`` or a JSON object within ``OMS_MAX_PAYLOAD_BYTES``."""
    if result is None:
        return None
    settings = get_settings()
    return json_object(result, what="result", max_bytes=settings.max_payload_bytes,
                       max_depth=settings.max_payload_depth)
