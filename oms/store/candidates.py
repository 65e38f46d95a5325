"""Who may claim a human step, in SQL: the person is among its ``assign.users`` or in one of its ``assign.groups``.

The candidates are a JSON column of the task (``oms_tasks.assign``), read with each
database's own JSON functions: ``jsonb_exists`` on PostgreSQL, ``json_each`` on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import ColumnElement, TextClause, bindparam, or_, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text

from .tables import tasks, users
from .users import User

_TABLE = tasks.name
_POSTGRESQL = text(f"(jsonb_exists({_TABLE}.assign -> 'users', :candidate_user) OR "
                   f"jsonb_exists_any({_TABLE}.assign -> 'groups', :candidate_groups))")
_SQLITE = text(f"(EXISTS (SELECT 1 FROM json_each({_TABLE}.assign, '$.users') WHERE value = :candidate_user) "
               f"OR EXISTS (SELECT 1 FROM json_each({_TABLE}.assign, '$.groups') "
               "WHERE value IN (SELECT value FROM json_each(:candidate_groups))))")


def assigned_to(dialect: str, user: str, groups: Sequence[str]) -> TextClause:
    """A condition on the task table: its candidates name ``user`` or one of ``groups``."""
    if dialect == "postgresql":
        return _POSTGRESQL.bindparams(bindparam("candidate_user", user, type_=Text()),
                                      bindparam("candidate_groups", list(groups), type_=ARRAY(Text())))
    return _SQLITE.bindparams(bindparam("candidate_user", user, type_=Text()),
                              bindparam("candidate_groups", json.dumps(list(groups)), type_=Text()))


_CLAIMABLE_POSTGRESQL = text(
    f"EXISTS (SELECT 1 FROM {users.name} AS person WHERE person.name = :claimant AND person.disabled_at IS NULL "
    f"AND (jsonb_exists({_TABLE}.assign -> 'users', person.name) OR jsonb_exists_any({_TABLE}.assign -> 'groups', "
    "ARRAY(SELECT jsonb_array_elements_text(person.groups)))))")
_CLAIMABLE_SQLITE = text(
    f"EXISTS (SELECT 1 FROM {users.name} AS person WHERE person.name = :claimant AND person.disabled_at IS NULL "
    f"AND (EXISTS (SELECT 1 FROM json_each({_TABLE}.assign, '$.users') WHERE value = person.name) "
    f"OR EXISTS (SELECT 1 FROM json_each({_TABLE}.assign, '$.groups') AS step, json_each(person.groups) AS mine "
    "WHERE step.value = mine.value)))")


def claimable_by(dialect: str, name: str) -> TextClause:
    """A condition on the task table: the live person ``name`` is among its candidates, her groups read in the same
    statement (a claim is one statement, its person not read first)."""
    statement = _CLAIMABLE_POSTGRESQL if dialect == "postgresql" else _CLAIMABLE_SQLITE
    return statement.bindparams(bindparam("claimant", name, type_=Text()))


def visible_to(dialect: str, user: User) -> ColumnElement[bool]:
    """Human steps a person may see: assigned to her or her groups, or held by her."""
    return or_(assigned_to(dialect, user.name, user.groups), tasks.c.worker_id == user.name).self_group()


def candidates(users: Sequence[str], groups: Sequence[str]) -> dict[str, list[str]]:
    """The ``assign`` value naming these candidates, as a human step's row stores it."""
    return {"users": list(users), "groups": list(groups)}
