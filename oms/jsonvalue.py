"""JSON only on the wire: check payloads and results where they enter the engine."""

from __future__ import annotations

import json
from typing import Any

from .exceptions import InvalidPayload


def json_object(value: Any, *, what: str, max_bytes: int) -> dict[str, Any]:
    """Return ``value`` as a plain JSON object, or raise :class:`InvalidPayload` saying why.

    Round-trips through ``json`` so what is stored is exactly what a worker will
    read back (tuples become lists, no NaN, string keys only).
    """
    if not isinstance(value, dict):
        raise InvalidPayload(f"{what} must be a JSON object (a dict), got {type(value).__name__}")
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"{what} is not JSON: {exc}") from None
    size = len(text.encode())
    if size > max_bytes:
        raise InvalidPayload(f"{what} is {size} bytes of JSON, over the limit of {max_bytes}")
    result: dict[str, Any] = json.loads(text)
    return result
