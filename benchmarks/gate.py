"""The start line of a benchmark's client processes: the clock starts once every one has imported and connected.

A fixed pause guessed it before; on a slow host eight processes importing Celery
and SQLAlchemy on two cores took longer than the pause, and the measurement then
counted their imports as the loop's time (the in-process starts of ``api.py`` read
a third of their real rate).
"""

from __future__ import annotations

from typing import Any


class StartGate:
    """``gate.wait()`` in each process, once it is ready; ``gate.open()`` in the parent, which returns when all are."""

    def __init__(self, ctx: Any, processes: int) -> None:
        self.processes = processes
        self._ready = ctx.Semaphore(0)
        self._go = ctx.Event()

    def wait(self) -> None:
        self._ready.release()
        self._go.wait()

    def open(self, timeout: float = 300) -> None:
        for _ in range(self.processes):
            if not self._ready.acquire(timeout=timeout):
                raise SystemExit(f"a client process was not ready within {timeout:g} s")
        self._go.set()
