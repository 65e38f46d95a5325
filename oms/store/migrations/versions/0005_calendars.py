"""Calendars, paused clocks and predicted lights; the red rows' deadlines (the page's breaches of the day).

Revision 0005, after 0004. Columns are added in place (nullable: no table is
rewritten). The new partial index on finished steps by topic serves the scanner's
completion-rate estimate, the one on red rows' deadlines the board's breaches of the
last 24 hours; on PostgreSQL they are built inside the upgrade's transaction, about
a second per million finished steps.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
MOMENT = sa.DateTime(timezone=True)
DONE = sa.text("status = 'done'")
RED = sa.text("light = 'red'")


def upgrade() -> None:
    op.create_table(
        "oms_calendars",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.add_column("oms_instances", sa.Column("calendar_id", sa.String(length=128), nullable=True))
    for column in (sa.Column("calendar_id", sa.String(length=128), nullable=True),
                   sa.Column("paused_at", MOMENT, nullable=True),
                   sa.Column("pause_reason", sa.Text(), nullable=True),
                   sa.Column("paused_s", sa.Float(), nullable=True),
                   sa.Column("light_reason", sa.String(length=16), nullable=True),
                   sa.Column("predicted_finish", MOMENT, nullable=True)):
        op.add_column("oms_tasks", column)
    op.create_index("ix_oms_tasks_done_topic", "oms_tasks", ["topic", "finished_at"], unique=False,
                    postgresql_where=DONE, sqlite_where=DONE)
    op.create_index("ix_oms_tasks_red_expires", "oms_tasks", ["expires_at"], unique=False,
                    postgresql_where=RED, sqlite_where=RED)


def downgrade() -> None:
    op.drop_index("ix_oms_tasks_red_expires", table_name="oms_tasks")
    op.drop_index("ix_oms_tasks_done_topic", table_name="oms_tasks")
    with op.batch_alter_table("oms_tasks") as batch:
        for name in ("predicted_finish", "light_reason", "paused_s", "pause_reason", "paused_at", "calendar_id"):
            batch.drop_column(name)
    with op.batch_alter_table("oms_instances") as batch:
        batch.drop_column("calendar_id")
    op.drop_table("oms_calendars")
