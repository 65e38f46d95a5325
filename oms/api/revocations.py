"""Live tokens remembered between requests, forgotten the moment any token is revoked (PostgreSQL only).

Looking a token up costs a database round trip on every request, which is a
large share of a pull worker's fetch + complete. On PostgreSQL, ``oms token
revoke`` (and ``create``) and ``oms user disable`` send ``NOTIFY oms_api_tokens`` in their transaction;
each API process listens on one connection of its own and empties its cache on
every notification, so a revoked token is refused by the next request. While the
listener is not connected nothing is cached, and an entry lives at most
:data:`TTL` seconds in any case (a row changed by hand is seen within that).
On SQLite every request reads the table.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import psycopg
from sqlalchemy.engine import make_url

from ..store.tokens import CHANNEL, TokenInfo
from ..store.users import User

logger = logging.getLogger(__name__)

#: Seconds a live token is trusted without reading its row again.
TTL = 10.0


#: What a live token names: an API token, or a person (her personal token).
Holder = TokenInfo | User


class TokenCache:
    """Token hashes -> live tokens, emptied by every notification on :data:`~oms.tokens.CHANNEL`."""

    def __init__(self, database_url: str) -> None:
        self.dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.entries: dict[str, tuple[float, Holder]] = {}
        #: Bumped by every notification: a lookup that began before one must not fill the cache.
        self.generation = 0
        self.listening = threading.Event()
        self.closed = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._listen, name="oms-token-revocations", daemon=True)
        self.thread.start()

    def get(self, hashed: str) -> Holder | None:
        if not self.listening.is_set():
            return None
        found = self.entries.get(hashed)
        if found is None or time.monotonic() - found[0] > TTL:
            return None
        return found[1]

    def put(self, hashed: str, info: Holder, generation: int) -> None:
        """Remember ``info``, read while the cache was at ``generation`` (unless a notification came since)."""
        with self.lock:
            if self.listening.is_set() and generation == self.generation:
                self.entries[hashed] = (time.monotonic(), info)

    def _forget(self) -> None:
        with self.lock:
            self.generation += 1
            self.entries.clear()

    def _listen(self) -> None:
        while not self.closed:
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._forget()
                    self.listening.set()
                    while not self.closed:
                        for _ in connection.notifies(timeout=1.0):
                            self._forget()
            except Exception as exc:  # the database restarts: cache nothing until listening again
                self.listening.clear()
                self._forget()
                if not self.closed:
                    logger.warning("token revocations: cannot listen (%s); every request reads its token meanwhile",
                                   type(exc).__name__)
                    time.sleep(1.0)
        self.listening.clear()

    def close(self) -> None:
        self.closed = True
        self.listening.clear()
        with contextlib.suppress(RuntimeError):
            self.thread.join(3)
