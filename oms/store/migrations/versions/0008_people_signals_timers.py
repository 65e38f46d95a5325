"""People in the loop: human steps' candidates, timers, signals, business keys, and the people themselves.

Revision 0008, after 0007. Adds columns only (nullable, no rewrite of existing rows)
and two tables; running instances and their steps are untouched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
MOMENT = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _index(name: str, table: str, columns: list[str], condition: str, *, unique: bool = False) -> None:
    """A partial index, the same on PostgreSQL and SQLite."""
    where = sa.text(condition)
    op.create_index(name, table, columns, unique=unique, postgresql_where=where, sqlite_where=where)


def upgrade() -> None:
    op.add_column("oms_instances", sa.Column("business_key", sa.String(length=255), nullable=True))
    _index("ix_oms_instances_business_key_open", "oms_instances", ["workflow_id", "business_key"],
           "business_key IS NOT NULL AND finished_at IS NULL", unique=True)
    _index("ix_oms_instances_business_key", "oms_instances", ["business_key"], "business_key IS NOT NULL")
    op.add_column("oms_tasks", sa.Column("assign", JSON, nullable=True))
    op.add_column("oms_tasks", sa.Column("wake_at", MOMENT, nullable=True))
    _index("ix_oms_tasks_timers", "oms_tasks", ["wake_at"], "wake_at IS NOT NULL AND status = 'pending'")
    _index("ix_oms_tasks_human_open", "oms_tasks", ["expires_at"],
           "topic = 'oms.human' AND (status = 'pending' OR status = 'running')")
    op.create_table(
        "oms_signals",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("received_at", MOMENT, nullable=False),
        sa.Column("consumed_at", MOMENT, nullable=True),
        sa.Column("task_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["instance_id"], ["oms_instances.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    _index("ix_oms_signals_key", "oms_signals", ["instance_id", "idempotency_key"], "idempotency_key IS NOT NULL",
           unique=True)
    _index("ix_oms_signals_kept", "oms_signals", ["instance_id", "name"], "consumed_at IS NULL")
    op.create_table(
        "oms_users",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("groups", JSON, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("disabled_at", MOMENT, nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_oms_users_token", "oms_users", ["token_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_oms_users_token", table_name="oms_users")
    op.drop_table("oms_users")
    op.drop_index("ix_oms_signals_kept", table_name="oms_signals")
    op.drop_index("ix_oms_signals_key", table_name="oms_signals")
    op.drop_table("oms_signals")
    op.drop_index("ix_oms_tasks_human_open", table_name="oms_tasks")
    op.drop_index("ix_oms_tasks_timers", table_name="oms_tasks")
    with op.batch_alter_table("oms_tasks") as batch:
        batch.drop_column("wake_at")
        batch.drop_column("assign")
    op.drop_index("ix_oms_instances_business_key", table_name="oms_instances")
    op.drop_index("ix_oms_instances_business_key_open", table_name="oms_instances")
    with op.batch_alter_table("oms_instances") as batch:
        batch.drop_column("business_key")
