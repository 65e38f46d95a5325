"""The HTTP API: ``oms api`` or ``uvicorn oms.api:app``. JSON under ``/v1``, ``/metrics``, ``/healthz``, ``/readyz``."""

from __future__ import annotations

from .app import create_app

#: The application ``uvicorn oms.api:app`` serves (settings are read when it starts, not on import).
app = create_app()

__all__ = ["app", "create_app"]
