"""The scan's prediction reads two small partial indexes before it reads a topic's queue (issue 23, the SLA scan).

Revision 0010, after 0009. Adds two indexes on ``oms_tasks``, nothing else: the
soonest deadline of a queued step a prediction may turn yellow, per topic, and the
queued steps a prediction turned yellow, per topic in queue order. Both hold queued
rows only (the second almost none), so they build in the time it takes to read the
queue; running instances are untouched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: As ``oms.store.tables`` writes them today (a migration keeps its own copy: the models move on).
PREDICTABLE = "status = 'pending' AND light = 'green' AND light_reason IS NULL"
PREDICTED_YELLOW = "status = 'pending' AND light = 'yellow' AND light_reason = 'predicted'"


def _index(name: str, columns: list[str], condition: str) -> None:
    """A partial index on ``oms_tasks``, the same on PostgreSQL and SQLite."""
    where = sa.text(condition)
    op.create_index(name, "oms_tasks", columns, postgresql_where=where, sqlite_where=where)


def upgrade() -> None:
    _index("ix_oms_tasks_predictable", ["topic", "expires_at", "ready_at"], PREDICTABLE)
    _index("ix_oms_tasks_predicted", ["topic", "ready_at"], PREDICTED_YELLOW)


def downgrade() -> None:
    op.drop_index("ix_oms_tasks_predicted", table_name="oms_tasks")
    op.drop_index("ix_oms_tasks_predictable", table_name="oms_tasks")
