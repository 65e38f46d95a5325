"""The schema of release 0.1.0: definitions, instances, tasks and the event log.

Revision 0001, the first. A database made by 0.1.0 (which created its tables
itself) is adopted at this revision by ``oms db upgrade``, then upgraded.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: Types as release 0.1.0 declared them (frozen here: the models may change, this revision may not).
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
MOMENT = sa.DateTime(timezone=True)


def _partial(condition: str) -> dict[str, Any]:
    return {"postgresql_where": sa.text(condition), "sqlite_where": sa.text(condition)}


def upgrade() -> None:
    op.create_table(
        "oms_definitions",
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", "version"),
    )
    op.create_table(
        "oms_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.String(length=40), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("step_id", sa.String(length=128), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("at", MOMENT, nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_oms_events_instance", "oms_events", ["instance_id", "id"], unique=False)
    op.create_table(
        "oms_instances",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_step", sa.Integer(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("results", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
        sa.Column("finished_at", MOMENT, nullable=True),
        sa.Column("warn_at", MOMENT, nullable=True),
        sa.Column("expires_at", MOMENT, nullable=True),
        sa.Column("light", sa.String(length=8), nullable=False),
        sa.Column("sla_check_at", MOMENT, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_oms_instances_sla_check", "oms_instances", ["sla_check_at"], unique=False,
                    **_partial("sla_check_at IS NOT NULL"))
    op.create_index("ix_oms_instances_workflow_status", "oms_instances", ["workflow_id", "status"], unique=False)
    op.create_table(
        "oms_tasks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("instance_id", sa.String(length=40), nullable=False),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("step_id", sa.String(length=128), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("lost", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("ready_at", MOMENT, nullable=False),
        sa.Column("warn_at", MOMENT, nullable=False),
        sa.Column("expires_at", MOMENT, nullable=False),
        sa.Column("light", sa.String(length=8), nullable=False),
        sa.Column("sla_check_at", MOMENT, nullable=True),
        sa.Column("started_at", MOMENT, nullable=True),
        sa.Column("finished_at", MOMENT, nullable=True),
        sa.Column("lease_expires_at", MOMENT, nullable=True),
        sa.Column("dispatched_at", MOMENT, nullable=True),
        sa.ForeignKeyConstraint(["instance_id"], ["oms_instances.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_oms_tasks_instance_step", "oms_tasks", ["instance_id", "step_index"], unique=False)
    op.create_index("ix_oms_tasks_lease", "oms_tasks", ["lease_expires_at"], unique=False,
                    **_partial("status = 'running'"))
    op.create_index("ix_oms_tasks_pending_ready", "oms_tasks", ["ready_at"], unique=False,
                    **_partial("status = 'pending'"))
    op.create_index("ix_oms_tasks_pending_topic", "oms_tasks", ["topic", "ready_at"], unique=False,
                    **_partial("status = 'pending'"))
    op.create_index("ix_oms_tasks_sla_check", "oms_tasks", ["sla_check_at"], unique=False,
                    **_partial("sla_check_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_table("oms_tasks")
    op.drop_table("oms_instances")
    op.drop_table("oms_events")
    op.drop_table("oms_definitions")
