"""The HTTP API's bearer tokens (hashed), the rolled-up counters of ``/metrics``, and an index for its gauges.

Revision 0006, after 0005.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MOMENT = sa.DateTime(timezone=True)
UNFINISHED = sa.text("status <> 'done' AND status <> 'cancelled'")


def upgrade() -> None:
    op.create_table(
        "oms_api_tokens",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("topics", sa.Text(), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("revoked_at", MOMENT, nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_oms_api_tokens_hash", "oms_api_tokens", ["token_hash"], unique=True)
    op.create_table(
        "oms_metrics",
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.String(length=512), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("metric", "labels"),
    )
    op.create_index("ix_oms_instances_unfinished", "oms_instances", ["workflow_id", "status"], unique=False,
                    postgresql_where=UNFINISHED, sqlite_where=UNFINISHED)


def downgrade() -> None:
    op.drop_index("ix_oms_instances_unfinished", table_name="oms_instances")
    op.drop_table("oms_metrics")
    op.drop_index("ix_oms_api_tokens_hash", table_name="oms_api_tokens")
    op.drop_table("oms_api_tokens")
