"""Notices delivered by a real ``celery worker`` on the engine's queue ``oms`` (PostgreSQL + Redis), as the README's
deployment runs them: sent at once after a kick, and by beat's sweep, retried after a 503, e-mailed through STARTTLS.

The receivers are the test's own, on loopback (``tests/receivers.py``); the notices are written as an escalation
writes them, with :func:`oms.store.notices.add` in a transaction, before the kick.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from oms.durations import utcnow
from oms.notify import kick
from oms.store import channels, outbox, users
from oms.store.db import database
from oms.store.notices import Notice, add

from ..conftest import Backend
from ..receivers import MailServer, Webhook
from ..workers import BeatProcess, WorkerProcess

pytestmark = pytest.mark.integration

SECRET = "whsec-integration-0123456789"
INSTANCE = "wf-" + "c" * 32
FACTS = {"light": "red", "deadline": "2026-12-06T00:10:00+00:00", "overdue_by_s": 30.0}


def write(*targets: str) -> list[str]:
    with database().engine.begin() as conn:
        return add(conn, [Notice(workflow_id="epa_waste_reg", target=t, facts=FACTS, instance_id=INSTANCE,
                                 step_id="charge_fee", rung=1) for t in targets], utcnow())


def wait_for(check: Callable[[], bool], what: str, logs: list[Path], timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            shown = "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for log in logs)
            pytest.fail(f"{what} not within {timeout}s\n{shown}")
        time.sleep(0.1)


def status(notice_id: str) -> str:
    return next(n.status for n in outbox.list_notices(limit=1000) if n.id == notice_id)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    receiver = Webhook(SECRET)
    yield receiver
    receiver.close()


def test_a_kick_after_the_commit_has_a_worker_send_the_notice_at_once(postgres_backend: Backend, tmp_path: Path,
                                                                      webhook: Webhook) -> None:
    """No beat runs: only the kick can make the worker send it."""
    channels.create("oncall-pager", webhook=webhook.url, secret=SECRET)
    env = {**postgres_backend.env, "OMS_PUBLIC_URL": "https://oms.agency.gov"}
    worker = WorkerProcess(env, tmp_path, ["oms"], modules=None, concurrency=2)
    try:
        [nid] = write("oncall-pager")
        kick()
        wait_for(lambda: status(nid) == "sent", "the notice sent", [worker.log])
        [got] = webhook.received
        assert got.signed and got.notice_id == nid and got.status == 200
        assert got.json()["link"] == f"https://oms.agency.gov/#/instances/{INSTANCE}"
        assert "oms.send_notices" in worker.log.read_text()
    finally:
        worker.stop()
    assert len(webhook.received) == 1 and [a.ok for a in outbox.attempts(nid)] == [True]


def test_beat_sweeps_retry_a_503_and_email_through_starttls_each_notice_delivered_once(
        postgres_backend: Backend, tmp_path: Path, webhook: Webhook) -> None:
    mail = MailServer(tmp_path)
    webhook.answers = [503]
    channels.create("oncall-pager", webhook=webhook.url, secret=SECRET)
    users.create("alice", ["inspectors"], email="alice@agency.gov")
    env = {**postgres_backend.env, "OMS_NOTICE_INTERVAL": "1", "OMS_NOTICE_BACKOFF": "1", "OMS_SLA_SCAN_INTERVAL": "5",
           "OMS_SMTP_URL": mail.url, "OMS_SMTP_FROM": "oms@agency.gov", "SSL_CERT_FILE": str(mail.cert)}
    worker = WorkerProcess(env, tmp_path, ["oms"], modules=None, concurrency=2)
    beat = BeatProcess(env, tmp_path)
    try:
        pager, alice = write("oncall-pager", "user:alice")  # no kick: beat's sweep finds them
        logs = [worker.log, beat.log]
        wait_for(lambda: status(pager) == "sent" and status(alice) == "sent", "both notices sent", logs)
        time.sleep(3)  # three more sweeps: nothing is sent again
    finally:
        beat.stop()
        worker.stop()
        mail.stop()
    first, second = webhook.received
    assert (first.status, second.status) == (503, 200) and first.notice_id == second.notice_id == pager
    assert [(a.ok, (a.detail or "")[:8]) for a in outbox.attempts(pager)] == [(False, "HTTP 503"), (True, "HTTP 200")]
    [got] = mail.mails
    assert got.tls and got.authenticated and got.recipients == ["alice@agency.gov"]
    assert got.message["Message-ID"] == f"<{alice}@agency.gov>" and INSTANCE in got.part("plain")
    assert mail.password not in (worker.log.read_text() + beat.log.read_text())
