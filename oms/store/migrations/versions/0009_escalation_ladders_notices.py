"""Escalation ladders, the notices they send, the SLA report's rollups; definitions kept in their author's key order.

Revision 0009, after 0008. Adds nullable columns (the rungs a step or an instance has
fired: existing rows have fired none) and new tables; running instances are untouched.
On PostgreSQL, definitions are stored as ``json`` rather than ``jsonb``, which keeps a
form's properties in the order written (definitions saved before keep the order jsonb
gave them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
MOMENT = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ladders() -> None:
    op.add_column("oms_tasks", sa.Column("rung", sa.Integer(), nullable=True))
    op.add_column("oms_instances", sa.Column("rung", sa.Integer(), nullable=True))


def _definitions(to: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE oms_definitions ALTER COLUMN spec TYPE {to} USING spec::text::{to}")


def _notices() -> None:
    op.create_table(
        "oms_channels",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("disabled_at", MOMENT, nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "oms_notices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("instance_id", sa.String(length=40), nullable=True),
        sa.Column("task_id", sa.String(length=40), nullable=True),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("step_id", sa.String(length=128), nullable=True),
        sa.Column("rung", sa.Integer(), nullable=True),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("facts", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", MOMENT, nullable=True),
        sa.Column("sent_at", MOMENT, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    where = sa.text("status = 'pending'")
    op.create_index("ix_oms_notices_due", "oms_notices", ["next_attempt_at"], postgresql_where=where,
                    sqlite_where=where)
    op.create_index("ix_oms_notices_created", "oms_notices", ["created_at"])
    op.create_table(
        "oms_notice_attempts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("notice_id", sa.String(length=40), nullable=False),
        sa.Column("at", MOMENT, nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["notice_id"], ["oms_notices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_oms_notice_attempts_notice", "oms_notice_attempts", ["notice_id", "id"])


def _report() -> None:
    """The SLA report's rollups of the event log (issue 21): kept when ``oms prune`` deletes the events."""
    op.create_table(
        "oms_sla_rollups",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("step_id", sa.String(length=128), nullable=False),
        sa.Column("calendar_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("finished", sa.Integer(), nullable=False),
        sa.Column("within_sla", sa.Integer(), nullable=False),
        sa.Column("breaches", sa.Integer(), nullable=False),
        sa.Column("over_s", sa.Float(), nullable=False),
        sa.Column("sla_s", sa.Float(), nullable=True),
        sa.Column("histograms", JSON, nullable=False),
        sa.Column("breach_hours", JSON, nullable=False),
        sa.Column("worst", JSON, nullable=False),
        sa.PrimaryKeyConstraint("day", "workflow_id", "step_id", "calendar_id"),
    )


def upgrade() -> None:
    _ladders()
    _notices()
    _definitions("json")
    _report()


def downgrade() -> None:
    op.drop_table("oms_sla_rollups")
    _definitions("jsonb")
    op.drop_index("ix_oms_notice_attempts_notice", table_name="oms_notice_attempts")
    op.drop_table("oms_notice_attempts")
    op.drop_index("ix_oms_notices_created", table_name="oms_notices")
    op.drop_index("ix_oms_notices_due", table_name="oms_notices")
    op.drop_table("oms_notices")
    op.drop_table("oms_channels")
    with op.batch_alter_table("oms_instances") as batch:
        batch.drop_column("rung")
    with op.batch_alter_table("oms_tasks") as batch:
        batch.drop_column("rung")
