"""A task's end is its status: ``cancelled`` and ``lapsed`` stop hiding in ``failed`` plus an error text.

Revision 0007, after 0006. Before it, an attempt its instance's end cancelled was
stored as ``failed`` with an error ``instance cancelled: <reason>`` (or ``instance
failed: <reason>``, when another step failed the instance), and an attempt whose
claim's lease ran out as ``failed`` with the error ``lease expired``. They become
``cancelled`` (the error keeps the reason, without the prefix) and ``lapsed``. The
column is a plain string: no type changes, only the rows; on PostgreSQL both
updates run in the upgrade's one transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_PREFIXES = ("instance cancelled: ", "instance failed: ")


def upgrade() -> None:
    tasks = sa.table("oms_tasks", sa.column("status", sa.String), sa.column("error", sa.Text))
    for prefix in _PREFIXES:
        op.execute(tasks.update()
                   .where(tasks.c.status == "failed", tasks.c.error.startswith(prefix, autoescape=True))
                   .values(status="cancelled", error=sa.func.substr(tasks.c.error, len(prefix) + 1)))
    op.execute(tasks.update().where(tasks.c.status == "failed", tasks.c.error == "lease expired")
               .values(status="lapsed"))


def downgrade() -> None:
    tasks = sa.table("oms_tasks", sa.column("status", sa.String), sa.column("error", sa.Text))
    op.execute(tasks.update().where(tasks.c.status == "lapsed").values(status="failed", error="lease expired"))
    op.execute(tasks.update().where(tasks.c.status == "cancelled")
               .values(status="failed", error=sa.literal(_PREFIXES[0]) + sa.func.coalesce(tasks.c.error, "")))
