"""Webhooks: the notice's JSON body POSTed to the channel's URL, signed with HMAC-SHA256 of the body.

Headers: ``X-OMS-Notice-Id`` (the same on every attempt: what a receiver deduplicates
on) and, for a channel with a secret, ``X-OMS-Signature: sha256=<hex>``. Any 2xx
answer delivers it; anything else (a redirect too: none is followed) is retried. The
URL appears in no error and no log line: its path may be the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.request
from typing import Any

from ..store.channels import Endpoint
from .errors import SendFailed

SIGNATURE_HEADER = "X-OMS-Signature"
NOTICE_ID_HEADER = "X-OMS-Notice-Id"
#: Most characters of a receiver's answer kept with the attempt.
ANSWER_CHARS = 200


def signature(secret: str, body: bytes) -> str:
    """The value of ``X-OMS-Signature``: ``sha256=`` and the hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new address to send the notice (and its signature) to."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _answer(response: Any) -> str:
    try:
        text = response.read(ANSWER_CHARS * 4).decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    return " ".join(text.split())[:ANSWER_CHARS]


def post(channel: Endpoint, notice_id: str, body: bytes, timeout: float) -> str:
    """Send ``body`` to the webhook; return what it answered (``HTTP 200``), or raise :class:`SendFailed`."""
    assert channel.url is not None
    headers = {"Content-Type": "application/json", "User-Agent": "hms-oms", NOTICE_ID_HEADER: notice_id}
    if channel.secret:
        headers[SIGNATURE_HEADER] = signature(channel.secret, body)
    request = urllib.request.Request(channel.url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            return f"HTTP {response.status}" + (f": {said}" if (said := _answer(response)) else "")
    except urllib.error.HTTPError as exc:
        with exc:  # its response's socket
            said = _answer(exc)
        raise SendFailed(f"HTTP {exc.code} {exc.reason}" + (f": {said}" if said else "")) from None
    except urllib.error.URLError as exc:
        raise SendFailed(f"cannot reach the webhook's host: {_reason(exc.reason)}") from None
    except TimeoutError:
        raise SendFailed(f"no answer within {timeout:g}s") from None
    except OSError as exc:
        raise SendFailed(f"the connection failed: {_reason(exc)}") from None


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
