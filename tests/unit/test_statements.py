"""The hot path's statements stay short enough for psycopg to parse them once.

psycopg converts a query's ``%(name)s`` placeholders with a regular expression and
caches the result only for queries of at most ``MAX_CACHED_STATEMENT_LENGTH`` bytes
(4,096). A longer one is parsed again on every call: the completion statement, at
4,196 bytes indented, spent more client CPU being parsed than being sent.
"""

from __future__ import annotations

import pytest
from psycopg import _queries

from oms.store.statements import statements

ALL = statements().all()


@pytest.mark.parametrize("name", sorted(ALL))
def test_a_hot_statement_is_parsed_once_by_psycopg(name: str) -> None:
    sql = ALL[name]
    assert len(sql.encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH, f"{name} is {len(sql.encode())} bytes"


def test_every_kind_of_finished_attempt_has_its_statement() -> None:
    assert {name.split(".")[1] for name in ALL if name.startswith("finish.")} == {
        "Advance", "CountItem", "Retry", "EndInstance"}
