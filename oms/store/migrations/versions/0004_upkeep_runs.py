"""The upkeep's runs (each SLA scan, reconciler pass, prune), and finished instances by age for ``oms prune``.

Revision 0004, after 0003. On PostgreSQL the new index on ``oms_instances`` is built
inside the upgrade's transaction: writes to that table wait for the build, about a
second per million instances.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
MOMENT = sa.DateTime(timezone=True)
FINISHED = sa.text("finished_at IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "oms_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("started_at", MOMENT, nullable=False),
        sa.Column("finished_at", MOMENT, nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_oms_runs_kind_finished", "oms_runs", ["kind", "finished_at"], unique=False)
    op.create_index("ix_oms_instances_finished", "oms_instances", ["finished_at"], unique=False,
                    postgresql_where=FINISHED, sqlite_where=FINISHED)


def downgrade() -> None:
    op.drop_index("ix_oms_instances_finished", table_name="oms_instances")
    op.drop_table("oms_runs")
