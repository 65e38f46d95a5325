"""Idempotency keys: a start retried with the same key returns the instance it started.

Revision 0003, after 0002. Unique per workflow, where a key is given.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("oms_instances", sa.Column("idempotency_key", sa.String(length=255), nullable=True))
    op.create_index("ix_oms_instances_idempotency", "oms_instances", ["workflow_id", "idempotency_key"], unique=True,
                    postgresql_where=sa.text("idempotency_key IS NOT NULL"),
                    sqlite_where=sa.text("idempotency_key IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_oms_instances_idempotency", table_name="oms_instances")
    with op.batch_alter_table("oms_instances") as batch:
        batch.drop_column("idempotency_key")
