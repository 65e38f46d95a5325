"""The hot path's statements stay short enough for psycopg to parse them once.

psycopg converts a query's ``%(name)s`` placeholders with a regular expression and
caches the result only for queries of at most ``MAX_CACHED_STATEMENT_LENGTH`` bytes
(4,096). A longer one is parsed again on every call: the completion statement, at
4,196 bytes indented, spent more client CPU being parsed than being sent.
"""

from __future__ import annotations

import pytest
from psycopg import _queries

from oms.store import postgres

HOT = ["START", "STARTED_WITH", "CLAIM_STEP", "CLAIM_ITEM", "CLAIM_TOPIC", "FINISH", "EXTEND", "HEARTBEAT",
       "LOOKUP", "STATE", "LAPSED"]


@pytest.mark.parametrize("name", HOT)
def test_a_hot_statement_is_parsed_once_by_psycopg(name: str) -> None:
    sql = getattr(postgres, name)
    assert len(sql.encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH, f"{name} is {len(sql.encode())} bytes"
