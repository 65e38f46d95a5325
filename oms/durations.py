"""Durations as people write them in SLAs: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d"``, ``"PT5M"``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, TypeAdapter

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_COMPACT = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ISO = TypeAdapter(timedelta)


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse a duration; raise ``ValueError`` naming the value when it is not one.

    Accepts compact unit strings (``"1h30m"``), ISO 8601 (``"PT5M"``), plain numbers
    of seconds and ``timedelta``. Zero and negative durations are returned as
    they are: whether they are allowed is the caller's rule.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    text = str(value).strip().lower()
    parts = _COMPACT.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    if text.startswith(("p", "-p")):
        try:
            return _ISO.validate_python(text.upper())
        except ValueError:
            pass
    raise ValueError(
        f"not a duration: {value!r} (use e.g. '30s', '5m', '1h30m', '2d' or ISO 8601 'PT5M')"
    )


def format_duration(value: timedelta) -> str:
    """Render a duration compactly, the inverse of :func:`parse_duration`."""
    total = value.total_seconds()
    if total != int(total):
        return f"{total:g}s"
    out, rest = "", int(total)
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"


def _positive(value: Any) -> timedelta:
    parsed = parse_duration(value)
    if parsed <= timedelta(0):
        raise ValueError(f"duration must be positive, got {value!r}")
    return parsed


#: A positive duration field that accepts the forms above and serialises compactly.
Duration = Annotated[
    timedelta,
    BeforeValidator(_positive),
    PlainSerializer(format_duration, return_type=str),
]
