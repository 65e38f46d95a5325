"""Parallel steps: join counters and steps left on instances, a mapped step's item on tasks.

Revision 0002, after 0001. Instances of release 0.1.0 are straight lines: the steps
from the one they are at onward are left, and they wait for no join. Columns are
added in place (``ALTER TABLE … ADD COLUMN``, on SQLite too), never by rebuilding a table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ITEM = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True, astext_type=sa.Text()),
                                               "postgresql")


def upgrade() -> None:
    op.add_column("oms_instances", sa.Column("steps_left", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("oms_instances", sa.Column("waiting", JSON, nullable=False, server_default=sa.text("'{}'")))
    steps = ("jsonb_array_length(d.spec -> 'steps')" if op.get_bind().dialect.name == "postgresql"
             else "json_array_length(d.spec, '$.steps')")
    op.execute(
        f"UPDATE oms_instances SET steps_left = (SELECT {steps} FROM oms_definitions d"
        " WHERE d.workflow_id = oms_instances.workflow_id AND d.version = oms_instances.version) - current_step"
        " WHERE status NOT IN ('done', 'cancelled')"
    )
    op.add_column("oms_tasks", sa.Column("item_index", sa.Integer(), nullable=True))
    op.add_column("oms_tasks", sa.Column("item", ITEM, nullable=True))
    op.drop_index("ix_oms_tasks_instance_step", table_name="oms_tasks")
    op.create_index("ix_oms_tasks_instance_step", "oms_tasks", ["instance_id", "step_index", "item_index"])


def downgrade() -> None:
    op.drop_index("ix_oms_tasks_instance_step", table_name="oms_tasks")
    op.create_index("ix_oms_tasks_instance_step", "oms_tasks", ["instance_id", "step_index"])
    with op.batch_alter_table("oms_tasks") as batch:
        batch.drop_column("item")
        batch.drop_column("item_index")
    with op.batch_alter_table("oms_instances") as batch:
        batch.drop_column("waiting")
        batch.drop_column("steps_left")
