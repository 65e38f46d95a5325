"""Names: workflow ids, step ids and topics become queue names, routing keys and file names; worker ids are stored.

A name is 1 to 128 letters, digits, ``_``, ``.`` or ``-``, starting with a letter or
a digit, matched in full (a trailing newline is not a name). Some names belong to
the engine or to Celery, whatever their case: the ``oms`` queue and every ``oms.*``
name (the engine's own workflows), and Celery's ``celery``, ``celeryev*`` and
``*.pidbox`` queues. Users cannot take them.
"""

from __future__ import annotations

import re

from ..exceptions import InvalidArgument
from ..settings import ENGINE_QUEUE

#: What a name looks like (matched in full).
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
MAX_NAME = 128
#: Workflow ids the engine keeps for itself.
SYSTEM_PREFIX = "oms."
#: Longest worker id (``oms_tasks.worker_id``).
MAX_WORKER_ID = 255
#: The engine's and Celery's names, in any case: whole, as a prefix, as a suffix (see :func:`reserved`).
RESERVED_NAMES = (ENGINE_QUEUE, "celery")
RESERVED_PREFIXES = (SYSTEM_PREFIX, "celeryev", "celery.")
RESERVED_SUFFIXES = (".pidbox",)
_NAME = re.compile(NAME_PATTERN)
#: What a worker id holds (matched in full): no control character (the OpenAPI document's pattern)…
WORKER_ID_PATTERN = r"[^\x00-\x1f\x7f]+"
#: …and no lone surrogate, which a pattern in JSON Schema cannot name.
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]+")


def check_name(value: object, what: str) -> str:
    """Return ``value`` if it can be a queue name, else raise ``ValueError`` naming it."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > MAX_NAME:
        raise ValueError(f"{what} {value[:40]!r}… is {len(value)} characters long: at most {MAX_NAME}")
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} cannot be a queue name: use letters, digits, '_', '.', '-' "
            f"(starting with a letter or digit, at most {MAX_NAME})"
        )
    return value


def reserved(value: str) -> bool:
    """Whether ``value`` is one of the engine's or Celery's names, in any case."""
    name = value.lower()
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES) or name.endswith(RESERVED_SUFFIXES)


def reserved_pattern() -> str:
    """:func:`reserved` as a regular expression without flags (JSON Schema's dialect has none): ``[oO][mM][sS]``."""
    def anycase(text: str) -> str:
        return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in text)

    return "|".join([*(f"^{anycase(n)}$" for n in RESERVED_NAMES), *(f"^{anycase(p)}" for p in RESERVED_PREFIXES),
                     *(f"{anycase(s)}$" for s in RESERVED_SUFFIXES)])


def check_free(value: str, what: str) -> str:
    """``value`` if it is a name users may take, else ``ValueError`` saying whose it is."""
    if reserved(value):
        raise ValueError(f"{what} {value!r} is reserved: 'oms', 'oms.*' are the engine's names and 'celery', "
                         "'celeryev*', '*.pidbox' Celery's (in any case)")
    return value


def user_name(value: object, what: str) -> str:
    """A name users may take (:func:`check_name` and :func:`check_free`), or :class:`InvalidArgument`."""
    try:
        return check_free(check_name(value, what), what)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def check_worker_id(value: object) -> str:
    """A worker id as stored: printable text of at most 255 characters, or :class:`InvalidArgument`."""
    if not isinstance(value, str) or not value or len(value) > MAX_WORKER_ID or not _PRINTABLE.fullmatch(value):
        shown = f"{value[:40]!r}…" if isinstance(value, str) and len(value) > 40 else repr(value)
        raise InvalidArgument(f"worker id {shown} must be printable text of 1 to {MAX_WORKER_ID} characters")
    return value
