"""``GET /v1/board``: the page's first screen, per workflow its steps' open lights and breaches of the last 24 h.

The rest of what the page reads is the API's own (``/v1/instances``…); this one
read is the page's, so it lives beside the page rather than in the API's routes.
Every open page polls it every 2 s, so one API process reads it at most once a
second, however many pages are open: counting the breaches scans the task table
(about 140 ms on PostgreSQL with 1M tasks).
"""

from __future__ import annotations

import threading
import time

from fastapi import APIRouter, Request

from ..ops.board import BoardWorkflow, board

router = APIRouter(prefix="/v1", tags=["page"])

#: Seconds one reading of the board is served again to every caller of the same app.
FRESH_FOR = 1.0


class _Shared:
    """The latest board of one app, read by one caller at a time while the others wait for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.read_at = float("-inf")
        self.value: list[BoardWorkflow] = []

    def get(self) -> list[BoardWorkflow]:
        with self.lock:
            if time.monotonic() - self.read_at >= FRESH_FOR:
                self.value, self.read_at = board(), time.monotonic()
            return self.value


_create = threading.Lock()


def _shared(request: Request) -> _Shared:
    with _create:
        if not isinstance(shared := getattr(request.app.state, "board", None), _Shared):
            shared = request.app.state.board = _Shared()
        return shared


@router.get("/board")
def get_board(request: Request) -> list[BoardWorkflow]:
    """Every workflow's steps: open steps by light (the clock read too) and the breaches of the last 24 h."""
    return _shared(request).get()
