"""The unit tier runs with no servers: the storage tests here use the embedded default only.

``tests/integration/test_on_postgres.py`` runs the same tests again on PostgreSQL + Redis.
"""

from __future__ import annotations

import pytest

from ..conftest import Backend


@pytest.fixture
def backend(sqlite_backend: Backend) -> Backend:
    return sqlite_backend
