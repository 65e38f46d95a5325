"""Durations as people write them in SLAs: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d"``, ``"PT5M"``.

Every duration the engine takes (SLAs, warnings, backoffs, leases, waits) is at
most :data:`MAX_DURATION`, a year: added to a date it stays a date, doubled or
summed it stays a number, and a typo (``"1000000000d"``) is refused where it is
written rather than overflowing where it is used. Retention (``OMS_RETENTION``)
may be longer.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, TypeAdapter

#: The longest duration accepted anywhere but retention.
MAX_DURATION = timedelta(days=365)
MAX_SECONDS = MAX_DURATION.total_seconds()
#: The longest retention (``OMS_RETENTION``, ``oms prune --finished-before``).
MAX_RETENTION = timedelta(days=100 * 365)

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_COMPACT = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ISO = TypeAdapter(timedelta)


def _bounded(seconds: float, value: object, limit: timedelta) -> timedelta:
    if not math.isfinite(seconds) or abs(seconds) > limit.total_seconds():
        raise ValueError(f"duration {value!r} is out of range: at most {format_duration(limit)}")
    return timedelta(seconds=seconds)


def parse_duration(value: str | int | float | timedelta, *, limit: timedelta = MAX_DURATION) -> timedelta:
    """Parse a duration; raise ``ValueError`` naming the value when it is not one, or longer than ``limit``.

    Accepts compact unit strings (``"1h30m"``), ISO 8601 (``"PT5M"``), plain numbers
    of seconds and ``timedelta``. Zero and negative durations are returned as
    they are: whether they are allowed is the caller's rule.
    """
    if isinstance(value, timedelta):
        return _bounded(value.total_seconds(), value, limit)
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
        return _bounded(seconds, value, limit)
    text = str(value).strip().lower()
    parts = _COMPACT.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return _bounded(sum(float(n) * _UNITS[u] for n, u in parts), value, limit)
    if text.startswith(("p", "-p")):
        try:
            parsed = _ISO.validate_python(text.upper())
        except (ValueError, OverflowError):
            pass
        else:
            return _bounded(parsed.total_seconds(), value, limit)
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


def _positive(value: Any, limit: timedelta = MAX_DURATION) -> timedelta:
    parsed = parse_duration(value, limit=limit)
    if parsed <= timedelta(0):
        raise ValueError(f"duration must be positive, got {value!r}")
    return parsed


#: A positive duration field of at most a year that accepts the forms above and serialises compactly.
Duration = Annotated[
    timedelta,
    BeforeValidator(_positive),
    PlainSerializer(format_duration, return_type=str),
]
#: The same, of at most :data:`MAX_RETENTION`.
LongDuration = Annotated[
    timedelta,
    BeforeValidator(lambda value: _positive(value, MAX_RETENTION)),
    PlainSerializer(format_duration, return_type=str),
]


def utcnow() -> datetime:
    """Now, in UTC: the engine's clock (every transition takes ``now`` from its caller, so tests can set it)."""
    return datetime.now(UTC)
