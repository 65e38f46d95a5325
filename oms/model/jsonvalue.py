"""JSON only on the wire: check payloads, results and texts where they enter the engine.

What is refused here would otherwise fail deep inside a transition: PostgreSQL
stores neither NUL characters nor lone surrogates (in ``jsonb`` or ``text``), and
deeply nested values overflow the recursion of ``json`` itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..exceptions import InvalidArgument, InvalidPayload

#: Characters PostgreSQL cannot store in text: NUL, and surrogates that are not part of a character.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored (its first NUL or lone surrogate, and where), or ``None`` if it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = "a NUL character" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X}), which is not text"
    return f"{what} at position {found.start()}"


def storable_text(text: str, max_chars: int) -> str:
    """``text`` made storable: unstorable characters replaced by U+FFFD, cut to ``max_chars`` (for messages)."""
    cleaned = _UNSTORABLE.sub("\ufffd", text)
    return cleaned if len(cleaned) <= max_chars else cleaned[: max_chars - 1] + "…"


def check_text(value: object, what: str, max_chars: int, setting: str) -> str:
    """A non-empty text of at most ``max_chars`` that can be stored (a reason), or :class:`InvalidArgument`."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{what} must be a non-empty string saying what happened")
    if len(value) > max_chars:
        raise InvalidArgument(f"{what} is {len(value)} characters long, over the limit of {max_chars} ({setting})")
    if problem := unstorable(value):
        raise InvalidArgument(f"{what} holds {problem}: it cannot be stored")
    return value


def _path(parts: tuple[Any, ...]) -> str:
    return "".join(f"[{part!r:.40}]" for part in parts)


def _check_values(value: Any, what: str, max_depth: int) -> None:
    """Walk ``value`` without recursion: refuse nesting deeper than ``max_depth`` and unstorable strings."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            problem = unstorable(node)
            if problem:
                raise InvalidPayload(f"{what}{_path(path)} holds {problem}: it cannot be stored")
            continue
        if isinstance(node, (dict, list, tuple)) and len(path) >= max_depth:
            raise InvalidPayload(f"{what} is nested deeper than {max_depth} levels (OMS_MAX_PAYLOAD_DEPTH)")
        if isinstance(node, dict):
            for key, item in node.items():
                if isinstance(key, str) and (problem := unstorable(key)):
                    raise InvalidPayload(f"{what}{_path(path)} has a key holding {problem}: it cannot be stored")
                stack.append((item, (*path, key)))
        elif isinstance(node, (list, tuple)):
            stack.extend((item, (*path, index)) for index, item in enumerate(node))


def json_object(value: Any, *, what: str, max_bytes: int, max_depth: int = 64) -> dict[str, Any]:
    """Return ``value`` as a plain JSON object, or raise :class:`InvalidPayload` saying why.

    Round-trips through ``json`` so what is stored is exactly what a worker will
    read back (tuples become lists, no NaN, string keys only).
    """
    if not isinstance(value, dict):
        raise InvalidPayload(f"{what} must be a JSON object (a dict), got {type(value).__name__}")
    _check_values(value, what, max_depth)
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"{what} is not JSON: {exc}") from None
    size = len(text.encode())
    if size > max_bytes:
        raise InvalidPayload(f"{what} is {size} bytes of JSON, over the limit of {max_bytes}")
    result: dict[str, Any] = json.loads(text)
    return result
