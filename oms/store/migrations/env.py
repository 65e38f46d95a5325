"""Alembic's environment: migrations run on the connection :mod:`oms.store.schema` opened (and locked)."""

from __future__ import annotations

from alembic import context

from oms.store.schema import VERSION_TABLE
from oms.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("oms migrations run through `oms db upgrade` (oms.store.schema), which opens the connection")
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
