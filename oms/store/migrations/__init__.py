"""The schema's migrations (Alembic), shipped with the package; applied by ``oms db upgrade``.

``versions/`` holds one file per revision, oldest first: ``0001`` is the schema of
release 0.1.0 exactly. A schema change is a new file whose ``down_revision`` is the
newest one, and the models (:mod:`oms.models`) change with it:
``tests/unit/test_schema.py`` fails when autogenerate finds the two apart.
``scripts/migration "what changes"`` writes a new revision from the models' difference.
The revision table is ``oms_schema_version`` (not Alembic's default), so the engine
can share a database with an application that runs its own Alembic.
"""
