"""How a sender says an attempt failed: what the receiver answered (or why none did), and whether to try again."""

from __future__ import annotations


class SendFailed(Exception):
    """An attempt at sending a notice failed: ``detail`` says how, never with a secret or a webhook's URL.

    ``permanent``: trying again cannot help (the receiver refused the message itself); else it is retried with
    backoff until ``OMS_NOTICE_RETRY_FOR`` has passed.
    """

    def __init__(self, detail: str, *, permanent: bool = False) -> None:
        super().__init__(detail)
        self.detail, self.permanent = detail, permanent
