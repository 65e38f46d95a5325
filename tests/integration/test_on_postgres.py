"""The unit tier's storage tests again, on PostgreSQL + Redis: one contract, both backends.

The unit tier runs them on SQLite with no servers (``tests/unit/conftest.py``); here
the ``backend`` fixture is PostgreSQL, so the state machine, the scanner and
versioning are held to the same assertions on both.
"""

from __future__ import annotations

import pytest

from ..conftest import Backend
from ..unit.test_bad_input import *  # noqa: F403
from ..unit.test_batches import *  # noqa: F403
from ..unit.test_chunks import *  # noqa: F403
from ..unit.test_clocks import *  # noqa: F403
from ..unit.test_definitions import test_save_versions_only_changes, test_unknown_workflow_is_named  # noqa: F401
from ..unit.test_doctor import *  # noqa: F403
from ..unit.test_gather import *  # noqa: F403
from ..unit.test_graph import *  # noqa: F403
from ..unit.test_holders import *  # noqa: F403
from ..unit.test_ladders import *  # noqa: F403
from ..unit.test_leases import *  # noqa: F403
from ..unit.test_notices import *  # noqa: F403
from ..unit.test_people import *  # noqa: F403
from ..unit.test_people_reads import *  # noqa: F403
from ..unit.test_predict import *  # noqa: F403
from ..unit.test_predict_bounds import *  # noqa: F403
from ..unit.test_retention import *  # noqa: F403
from ..unit.test_sla import *  # noqa: F403
from ..unit.test_sla_report import *  # noqa: F403
from ..unit.test_transitions import *  # noqa: F403

pytestmark = pytest.mark.integration


@pytest.fixture
def backend(postgres_backend: Backend) -> Backend:
    return postgres_backend
