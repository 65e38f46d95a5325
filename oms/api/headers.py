"""Headers the API reads as values, checked as the bytes that came: ``Idempotency-Key``.

HTTP header values are bytes; Starlette decodes them as Latin-1, so a key sent as
UTF-8 ``été`` would be stored as ``Ã©tÃ©``. RFC 9110 leaves anything beyond
visible ASCII (``obs-text``) without a meaning, so a key is 1 to 255 characters of
printable ASCII, 0x21-0x7E, with spaces inside (never at its ends, which parsers
strip); anything else is 400 ``InvalidHeader`` before anything is stored.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header

from .errors import ApiError

#: The longest key, as :func:`oms.engine.checks.check_key` stores it.
MAX_KEY_CHARS = 255
_PRINTABLE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


async def idempotency_key(
    idempotency_key: Annotated[str | None, Header(
        json_schema_extra={"pattern": "^[!-~](?:[ -~]*[!-~])?$", "minLength": 1, "maxLength": MAX_KEY_CHARS},
        description="Makes a retried request safe: the same key again returns what the first one did. 1 to 255 "
                    "printable ASCII characters (spaces inside allowed); anything else is 400 InvalidHeader.",
    )] = None,
) -> str | None:
    """The ``Idempotency-Key`` header, or ``None``; 400 ``InvalidHeader`` unless 1 to 255 printable ASCII (``async``:
    no thread hop for a check that does no I/O)."""
    if idempotency_key is None:
        return None
    if not idempotency_key:
        raise ApiError(400, "InvalidHeader", "the Idempotency-Key header is empty: send 1 to 255 printable ASCII "
                       "characters, or no header")
    if len(idempotency_key) > MAX_KEY_CHARS:
        raise ApiError(400, "InvalidHeader", f"the Idempotency-Key header is {len(idempotency_key)} characters long, "
                       f"over the limit of {MAX_KEY_CHARS}")
    if not _PRINTABLE.fullmatch(idempotency_key):
        at, char = next(((i, c) for i, c in enumerate(idempotency_key) if not " " <= c <= "~"),
                        (0, " "))  # else a space at an end
        raise ApiError(400, "InvalidHeader", f"the Idempotency-Key header holds byte 0x{ord(char):02x} at position "
                       f"{at}: it must be printable ASCII (0x21-0x7E, spaces inside only)")
    return idempotency_key


#: A route's ``Idempotency-Key`` header, checked.
IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]
