"""Alembic's environment: migrations run on the connection :mod:`oms.schema` opened (and locked)."""

from __future__ import annotations

from alembic import context

from oms.models import Base
from oms.schema import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("oms migrations run through `oms db upgrade` (oms.schema), which opens the connection")
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
