"""Control operations and prune wait out a database outage, as worker transitions do (issue 12, 4.2 and section 2).

The database is reached through a forwarder the test cuts (every connection
dropped, new ones refused for 1.5 s), so no other test's connections are touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from act import fail_task, fetch_task
from oms import UnknownInstance, Workflow, cancel_workflow, get_instance, retry_workflow, start_workflow
from oms.durations import utcnow
from oms.ops.retention import prune
from oms.ops.watermarks import SETTLE
from oms.store.db import retry_seconds

from ..conftest import Backend, _configure
from ..cuttable import Cuttable
from ..services import REDIS_URL

pytestmark = pytest.mark.integration

OUTAGE = 1.5


@pytest.fixture
def proxy(postgres_backend: Backend, tmp_path: Path) -> Iterator[Cuttable]:
    """The engine configured to reach PostgreSQL through a forwarder the test cuts."""
    url = make_url(postgres_backend.database_url)
    forwarder = Cuttable(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=forwarder.port).render_as_string(hide_password=False)
    _configure("proxied", proxied, REDIS_URL, tmp_path)
    yield forwarder
    forwarder.close()


def test_cancel_retry_and_prune_wait_out_a_database_outage(proxy: Cuttable, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="oms")
    Workflow(id="ctl", steps=[{"id": "ctl_step", "sla": "1h"}]).save()
    failed = start_workflow("ctl", payload={})
    task = fetch_task("ctl_step", max_wait="5s")
    assert task is not None and task.instance_id == failed
    fail_task(task.id, "so that it can be retried")
    cancelled = start_workflow("ctl", payload={})

    # prune first waits SETTLE for the events to settle: its outage lasts past that
    calls: list[tuple[str, Callable[[], object], float]] = [
        ("cancelling a workflow", lambda: cancel_workflow(cancelled, "during an outage"), OUTAGE),
        ("running a workflow again", lambda: retry_workflow(failed), OUTAGE),
        ("pruning finished instances", lambda: prune(utcnow(), batch=10), OUTAGE + SETTLE.total_seconds()),
    ]
    for what, call, outage in calls:
        get_instance(failed)  # a pooled connection, cut under the call
        proxy.cut(outage)
        started = time.monotonic()
        call()
        assert time.monotonic() - started >= outage * 0.8, what
        assert any(f"database unavailable while {what}" in r.getMessage() for r in caplog.records), what
    assert get_instance(failed).status == "running"  # offered again
    with pytest.raises(UnknownInstance):
        get_instance(cancelled)  # cancelled, then pruned


def test_after_an_outage_the_first_call_gets_a_live_connection_without_retrying(
        proxy: Cuttable, caplog: pytest.LogCaptureFixture) -> None:
    """A database restart ends every pooled connection; the pool hands out none of them again (an HTTP request's
    first read answered 503 while the database was back)."""
    caplog.set_level(logging.WARNING, logger="oms")
    Workflow(id="restarted", steps=[{"id": "after", "sla": "1h"}]).save()
    instance_id = start_workflow("restarted", payload={})  # a connection in each pool, kept
    get_instance(instance_id)
    proxy.cut(0.05)
    time.sleep(0.3)  # back up, every pooled connection gone
    budget = retry_seconds.set(0.0)  # no retry to hide a dead connection
    try:
        assert get_instance(instance_id).status == "running"  # the engine's pool
        assert fetch_task("after", max_wait=0) is not None  # the autocommit pool
    finally:
        retry_seconds.reset(budget)
    assert not any("database unavailable" in r.getMessage() for r in caplog.records)
