"""Notices that arrive, against real receivers the test starts on loopback: a webhook that checks signatures and can
fail, and an SMTP server with STARTTLS and AUTH (aiosmtpd). The clock is the test's: backoff and the day of retries
are walked through, not waited for.

``tests/integration/test_on_postgres.py`` runs these again on PostgreSQL (SKIP LOCKED claims);
``tests/integration/test_notices.py`` delivers through a real Celery worker and beat.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

import oms
from oms.api import create_app
from oms.api.html import app_page
from oms.cli import main
from oms.exceptions import InvalidArgument, InvalidDefinition
from oms.notify import Report, deliver, kick
from oms.notify.delivery import backoff, send
from oms.settings import get_settings
from oms.store import channels, outbox, tokens, users
from oms.store.channels import UnknownChannel
from oms.store.db import database
from oms.store.notices import Notice, add
from oms.store.tables import notices as notice_table

from ..conftest import Backend
from ..receivers import MailServer, Webhook, free_port

SECRET = "whsec-0123456789-abcdef"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
INSTANCE = "wf-" + "a" * 32
FACTS = {"light": "red", "deadline": "2026-12-01T08:58:45+00:00", "overdue_by_s": 75.0, "rung": "director"}
PUBLIC = "https://oms.agency.gov"


def configure(backend: Backend, **settings: object) -> None:
    """The backend's settings, and ``settings`` besides (or instead)."""
    oms.configure(**{"database_url": backend.database_url, "broker_url": backend.broker_url, "home": backend.home,
                     **settings})


def write(target: str, at: datetime = T0, count: int = 1) -> list[str]:
    """``count`` notices to ``target`` written as the ladder writes them: in a transaction, with ``add``."""
    with database().engine.begin() as conn:
        return add(conn, [Notice(workflow_id="epa_waste_reg", target=target, facts=FACTS, instance_id=INSTANCE,
                                 task_id="tk-" + "b" * 32, step_id="charge_fee", rung=2) for _ in range(count)], at)


def row(notice_id: str) -> outbox.NoticeView:
    [found] = [n for n in outbox.list_notices(limit=10_000) if n.id == notice_id]
    return found


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    receiver = Webhook(SECRET)
    yield receiver
    receiver.close()


@pytest.fixture
def mail(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailServer]:
    server = MailServer(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))  # the client trusts the test's certificate
    configure(backend, smtp_url=server.url, smtp_from="OMS <oms@agency.gov>", public_url=PUBLIC)
    yield server
    server.stop()


def test_a_webhook_gets_the_facts_signed_and_the_attempt_is_recorded(backend: Backend, webhook: Webhook) -> None:
    configure(backend, public_url=PUBLIC)
    channels.create("oncall-pager", webhook=webhook.url, secret=SECRET)
    [nid] = write("oncall-pager")
    assert deliver(T0) == Report(sent=1)
    [got] = webhook.received
    assert got.signed and got.status == 200 and got.path == "/hooks/T0/B0/path-secret"
    assert got.notice_id == nid and got.headers["content-type"] == "application/json"
    body = got.json()
    assert body["notice_id"] == nid and body["instance_id"] == INSTANCE and body["step"] == "charge_fee"
    assert body["workflow"] == "epa_waste_reg" and body["light"] == "red" and body["rung"] == 2
    assert body["deadline"] == FACTS["deadline"] and body["overdue_by_s"] == 75.0
    assert body["link"] == f"{PUBLIC}/#/instances/{INSTANCE}" and body["facts"] == FACTS
    assert "1m15s over" in body["text"] and body["text"].startswith("RED epa_waste_reg / charge_fee")  # Slack, Teams
    sent = row(nid)
    assert (sent.status, sent.attempts, sent.sent_at, sent.last_error, sent.light) == ("sent", 1, T0, None, "red")
    [attempt] = outbox.attempts(nid)
    assert attempt.ok and attempt.at == T0 and attempt.detail is not None and attempt.detail.startswith("HTTP 200")
    assert deliver(T0 + timedelta(days=2)) == Report()  # sent once: nothing is due again


def test_a_503_is_retried_after_its_backoff_and_delivered_once(backend: Backend, webhook: Webhook) -> None:
    webhook.answers = [503]
    channels.create("oncall-pager", webhook=webhook.url, secret=SECRET)
    [nid] = write("oncall-pager")
    assert deliver(T0) == Report(retrying=1)
    waiting = row(nid)
    wait = backoff(1, nid)
    assert waiting.status == "pending" and waiting.next_attempt_at == T0 + wait
    assert waiting.last_error is not None and waiting.last_error.startswith("HTTP 503 Service Unavailable")
    assert timedelta(seconds=5) <= wait <= timedelta(seconds=5.5)  # OMS_NOTICE_BACKOFF, plus its spread
    assert deliver(T0 + wait - timedelta(milliseconds=1)) == Report()  # not due yet
    assert deliver(T0 + wait) == Report(sent=1)
    first, second = webhook.received
    assert (first.status, second.status) == (503, 200) and first.signed and second.signed
    assert first.notice_id == second.notice_id == nid and first.body == second.body  # the same bytes each time
    assert [(a.ok, (a.detail or "")[:8]) for a in outbox.attempts(nid)] == [(False, "HTTP 503"), (True, "HTTP 200")]
    assert row(nid).status == "sent" and row(nid).attempts == 2
    assert deliver(T0 + timedelta(days=1)) == Report() and len(webhook.received) == 2


def test_a_receiver_that_stays_down_is_retried_with_backoff_for_a_day_then_given_up(backend: Backend) -> None:
    channels.create("oncall-pager", webhook=f"http://127.0.0.1:{free_port()}/hook", secret=SECRET)  # none listens
    [nid] = write("oncall-pager")
    now, waits = T0, []
    while row(nid).status == "pending":
        assert len(waits) < 100, "never gave up"
        deliver(now)
        due = row(nid).next_attempt_at
        if due is not None:
            waits.append(due - now)
            now = due
    given_up = row(nid)
    assert given_up.status == "failed" and given_up.next_attempt_at is None
    assert given_up.last_error is not None and given_up.last_error.startswith(
        f"gave up after {given_up.attempts} attempt(s) over 1d: cannot reach the webhook's host")
    tries = outbox.attempts(nid)
    assert len(tries) == given_up.attempts == len(waits) + 1 and not any(t.ok for t in tries)
    assert tries[0].at == T0 and tries[-1].at == T0 + timedelta(days=1)  # the last one when the day ends
    # each wait doubles from OMS_NOTICE_BACKOFF (5 s) up to an hour, with the notice's own spread of under 10 %
    assert waits[:-1] == [backoff(n, nid) for n in range(1, len(waits))]
    assert [round(w / backoff(1, nid)) for w in waits[:5]] == [1, 2, 4, 8, 16]
    assert max(waits) <= timedelta(hours=1.1) and waits[-2] >= timedelta(hours=1)
    assert deliver(T0 + timedelta(days=3)) == Report()  # given up: never tried again


def test_targets_that_reach_nobody_fail_at_once_with_the_reason(backend: Backend, mail: MailServer) -> None:
    users.create("alice", ["inspectors"], email="alice@agency.gov")
    users.create("bob", ["inspectors"])  # no e-mail address
    users.create("eve", ["auditors"], email="eve@agency.gov")
    with database().engine.begin() as conn:
        users.disable(conn, "eve", T0)
    channels.create("old-pager", webhook="https://pager.agency.gov/hook", secret=SECRET)
    channels.disable("old-pager")
    reasons = {
        "user:bob": "user 'bob' has no e-mail address",
        "user:eve": "user 'eve' is disabled",
        "user:zed": "no user is named 'zed'",
        "group:auditors": "group 'auditors' has no live member with an e-mail address",
        "group:nobody": "group 'nobody' has no live member with an e-mail address",
        "old-pager": "channel 'old-pager' is disabled",
        "no-such-channel": "no channel is named 'no-such-channel'",
        "assignee": "no channel is named 'assignee' ('assignee' is resolved by the ladder",
    }
    ids = {target: write(target)[0] for target in reasons}
    assert deliver(T0) == Report(failed=len(reasons))
    for target, reason in reasons.items():
        failed = row(ids[target])
        assert failed.status == "failed" and failed.attempts == 1, target
        assert failed.last_error is not None and failed.last_error.startswith(reason), (target, failed.last_error)
    assert deliver(T0 + timedelta(days=2)) == Report() and mail.mails == []  # not retried


def test_email_to_a_person_a_group_and_a_channel_through_starttls(backend: Backend, mail: MailServer) -> None:
    users.create("alice", ["inspectors"], email="alice@agency.gov")
    users.create("bob", ["inspectors", "supervisors"], email="bob@agency.gov")
    users.create("carol", ["inspectors"])  # no address: the group's others still get it
    channels.create("director-mail", email="director@agency.gov")
    person, group, channel = (write(t)[0] for t in ("user:alice", "group:inspectors", "director-mail"))
    assert deliver(T0) == Report(sent=3)
    by_id = {m.message["X-OMS-Notice-Id"]: m for m in mail.mails}
    assert by_id[person].recipients == ["alice@agency.gov"]
    assert by_id[group].recipients == ["alice@agency.gov", "bob@agency.gov"]
    assert by_id[channel].recipients == ["director@agency.gov"]
    for nid, got in by_id.items():
        assert got.tls and got.authenticated  # STARTTLS, then AUTH with the URL's user and password
        message = got.message
        assert message["Message-ID"] == f"<{nid}@agency.gov>" and message["From"] == "OMS <oms@agency.gov>"
        assert message["Subject"] == f"[OMS] RED epa_waste_reg / charge_fee: 1m15s over ({INSTANCE})"
        plain, html = got.part("plain"), got.part("html")
        for fact in (INSTANCE, "charge_fee", "epa_waste_reg", "red", FACTS["deadline"], "1m15s over", nid,
                     f"{PUBLIC}/#/instances/{INSTANCE}"):
            assert fact in plain and fact in html, fact
        assert f'<a href="{PUBLIC}/#/instances/{INSTANCE}">' in html
    detail = outbox.attempts(person)[0].detail or ""
    assert "accepted it for 1 recipient(s)" in detail and mail.password not in detail
    assert mail.password not in repr(get_settings()) and mail.password not in str(get_settings())


def test_an_smtp_server_that_is_down_loses_nothing(backend: Backend, mail: MailServer) -> None:
    users.create("alice", ["inspectors"], email="alice@agency.gov")
    mail.stop()
    [nid] = write("user:alice")
    assert deliver(T0) == Report(retrying=1)
    waiting = row(nid)
    assert waiting.last_error is not None and waiting.last_error.startswith(f"cannot send through 127.0.0.1:{mail.port}")
    assert mail.password not in waiting.last_error
    mail.start()
    assert waiting.next_attempt_at is not None and deliver(waiting.next_attempt_at) == Report(sent=1)
    assert [m.message["Message-ID"] for m in mail.mails] == [f"<{nid}@agency.gov>"]


def test_email_needs_its_settings_and_waits_for_them(backend: Backend) -> None:
    users.create("alice", ["inspectors"], email="alice@agency.gov")
    [nid] = write("user:alice")
    assert deliver(T0) == Report(retrying=1)
    assert (row(nid).last_error or "").startswith("OMS_SMTP_URL is not set")
    configure(backend, smtp_url="smtp+plain://mail.agency.gov:25", smtp_from="oms@agency.gov")
    deliver(row(nid).next_attempt_at)
    assert (row(nid).last_error or "").startswith("smtp+plain:// (no TLS) is accepted for a loopback host only")


def test_a_sender_that_dies_between_send_and_record_is_replaced_after_its_lease(backend: Backend,
                                                                                webhook: Webhook) -> None:
    """The documented duplicate: the receiver sees the notice again, with the same X-OMS-Notice-Id."""
    channels.create("oncall-pager", webhook=webhook.url, secret=SECRET)
    [nid] = write("oncall-pager")
    lease = timedelta(seconds=get_settings().notice_lease)
    [held] = outbox.claim(T0, lease, 10)
    assert held.attempt == 1 and held.lease_until == T0 + lease
    send(held, T0, 5.0)  # ... and the sender is killed before it records anything
    assert outbox.claim(T0 + lease - timedelta(seconds=1), lease, 10) == []  # its lease still holds the notice
    assert deliver(T0 + lease) == Report(sent=1)  # a sender after the lease sends it again
    assert [r.notice_id for r in webhook.received] == [nid, nid] and webhook.received[0].body == webhook.received[1].body
    assert row(nid).attempts == 2 and [a.ok for a in outbox.attempts(nid)] == [True]
    # a record the dead sender's claim makes late cannot reschedule the notice: it was sent
    outbox.record(held, T0, False, "late", retry_at=T0 + timedelta(hours=1))
    assert row(nid).status == "sent"


def test_a_late_failure_of_a_lapsed_claim_does_not_move_a_newer_one(backend: Backend) -> None:
    channels.create("oncall-pager", webhook=f"http://127.0.0.1:{free_port()}/hook")
    [nid] = write("oncall-pager")
    lease = timedelta(minutes=1)
    [first] = outbox.claim(T0, lease, 10)
    [second] = outbox.claim(T0 + lease, lease, 10)  # the first sender's lease lapsed
    outbox.record(first, T0 + lease, False, "late", retry_at=T0 + timedelta(hours=5))
    assert row(nid).next_attempt_at == T0 + 2 * lease  # still the second claim's
    outbox.record(second, T0 + lease, False, "refused", retry_at=T0 + timedelta(minutes=3))
    assert row(nid).next_attempt_at == T0 + timedelta(minutes=3) and row(nid).last_error == "refused"


def test_concurrent_sweeps_send_each_notice_once(backend: Backend, webhook: Webhook) -> None:
    channels.create("oncall-pager", webhook=webhook.url, secret=SECRET)
    ids = write("oncall-pager", count=40)
    reports: list[Report] = []
    sweeps = [threading.Thread(target=lambda: reports.append(deliver(T0))) for _ in range(4)]
    for sweep in sweeps:
        sweep.start()
    for sweep in sweeps:
        sweep.join(60)
    assert sum(r.sent for r in reports) == 40
    assert sorted(r.notice_id for r in webhook.received) == sorted(ids)  # each once
    with database().engine.connect() as conn:
        assert set(conn.execute(select(notice_table.c.status)).scalars()) == {"sent"}


def test_a_redirect_is_not_followed(backend: Backend, webhook: Webhook) -> None:
    webhook.answers = [302]
    channels.create("oncall-pager", webhook=webhook.url, secret=SECRET)
    [nid] = write("oncall-pager")
    assert deliver(T0) == Report(retrying=1) and len(webhook.received) == 1
    assert (row(nid).last_error or "").startswith("HTTP 302")


SLACK_PATH = "/services/T000/B000/XXXXSECRETPATH"


def test_secrets_never_shown_by_the_command_the_api_reprs_errors_or_logs(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    hook = f"http://127.0.0.1:{free_port()}{SLACK_PATH}"  # nothing listens: its attempts fail and are logged
    made = runner.invoke(main, ["channel", "create", "team-slack", "--webhook", hook], env={"OMS_CHANNEL_SECRET": SECRET})
    assert made.exit_code == 0, made.output
    assert "created channel 'team-slack' (webhook http://127.0.0.1:" in made.stdout and "signed" in made.stdout
    again = runner.invoke(main, ["channel", "create", "team-slack", "--webhook", hook, "--secret", SECRET])
    assert again.exit_code == 1 and "exists already" in again.stderr
    assert runner.invoke(main, ["channel", "create", "mail", "--email", "director@agency.gov"]).exit_code == 0
    shown = [runner.invoke(main, ["channel", "list"]).stdout, runner.invoke(main, ["channel", "list", "--json"]).stdout,
             made.stdout, again.stdout + again.stderr, repr(channels.list_channels()),
             repr(channels.get("team-slack"))]
    with database().engine.connect() as conn:
        shown.append(repr(channels.endpoint(conn, "team-slack")))
    listed = shown[0]
    assert "team-slack" in listed and "/…" in listed and "yes" in listed and "director@agency.gov" in listed
    secret_admin, _ = tokens.create("admin", name="ops")
    reader, _ = tokens.create("reader", name="board")
    admin = {"Authorization": f"Bearer {secret_admin}"}
    with TestClient(create_app()) as client:
        posted = client.post("/v1/channels", json={"name": "pager", "webhook": hook, "secret": SECRET}, headers=admin)
        assert posted.status_code == 201 and posted.json()["signed"] is True, posted.text
        duplicate = client.post("/v1/channels", json={"name": "pager", "webhook": hook, "secret": SECRET},
                                headers=admin)
        assert duplicate.status_code == 409 and duplicate.json()["error"] == "ChannelExists"
        refused = client.post("/v1/channels", json={"name": "bad", "webhook": "ftp://x" + SLACK_PATH,
                                                    "secret": SECRET}, headers=admin)
        assert refused.status_code == 422
        listed_api = client.get("/v1/channels", headers={"Authorization": f"Bearer {reader}"})
        assert {c["name"] for c in listed_api.json()} == {"team-slack", "mail", "pager"}
        shown += [posted.text, duplicate.text, refused.text, listed_api.text]
    [nid] = write("team-slack")
    deliver(T0)
    shown += [str(row(nid).last_error), *(str(a.detail) for a in outbox.attempts(nid)), caplog.text]
    assert row(nid).status == "pending"
    for text in shown:
        assert SECRET not in text and "XXXXSECRETPATH" not in text, text


def test_who_may_read_notices_and_define_channels(backend: Backend) -> None:
    keys = {}
    for role in ("admin", "starter", "reader", "worker", "signaller"):
        secret, _ = tokens.create(role, name=f"t-{role}", topics=["a"] if role == "worker" else None)
        keys[role] = {"Authorization": f"Bearer {secret}"}
    users.create("alice", ["inspectors"], email="alice@agency.gov")
    person, _ = users.create("dave", ["supervisors"], role="supervisor")
    keys["supervisor"] = {"Authorization": f"Bearer {person}"}
    write("user:alice")
    with TestClient(create_app()) as client:
        for role, headers in keys.items():
            allowed = role in ("admin", "reader")
            for path in ("/v1/notices", "/v1/channels"):
                assert client.get(path, headers=headers).status_code == (200 if allowed else 403), (role, path)
            made = client.post("/v1/channels", json={"name": f"c-{role}", "email": "d@agency.gov"}, headers=headers)
            assert made.status_code == (201 if role == "admin" else 403), (role, made.text)
        assert client.get("/v1/notices").status_code == 401 and client.get("/v1/channels").status_code == 401
        [listed] = client.get("/v1/notices", headers=keys["reader"]).json()
        assert listed["target"] == "user:alice" and listed["status"] == "pending" and listed["light"] == "red"
        assert client.get("/v1/notices?status=failed", headers=keys["reader"]).json() == []
        later = (T0 + timedelta(hours=1)).isoformat()
        assert client.get("/v1/notices", params={"since": later}, headers=keys["reader"]).json() == []


def test_oms_notices_lists_what_was_sent_and_what_failed(backend: Backend, webhook: Webhook) -> None:
    channels.create("oncall-pager", webhook=webhook.url, secret=SECRET)
    now = datetime.now(UTC)
    [sent] = write("oncall-pager", at=now)
    [failed] = write("user:nobody", at=now)
    deliver(now)
    runner = CliRunner()
    out = runner.invoke(main, ["notices"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["written", "target", "about", "light"]
    assert any("oncall-pager" in line and "sent" in line and INSTANCE in line for line in lines)
    assert any("user:nobody" in line and "failed" in line and "no user is named 'nobody'" in line for line in lines)
    only_failed = runner.invoke(main, ["notices", "--failed"]).stdout
    assert "user:nobody" in only_failed and "oncall-pager" not in only_failed
    assert runner.invoke(main, ["notices", "--since", "2099-01-01"]).stdout == ""
    as_json = runner.invoke(main, ["notices", "--json"]).stdout
    assert sent in as_json and failed in as_json and '"last_error": "no user is named' in as_json
    bad = runner.invoke(main, ["notices", "--since", "yesterday"])
    assert bad.exit_code == 1 and "--since 'yesterday' is neither a duration" in bad.stderr
    disabled = runner.invoke(main, ["channel", "disable", "oncall-pager"])
    assert disabled.exit_code == 0 and channels.get("oncall-pager").disabled_at is not None
    unknown = runner.invoke(main, ["channel", "disable", "nope"])
    assert unknown.exit_code == 1 and "no channel is named 'nope'" in unknown.stderr


def test_channels_are_checked_as_they_are_defined(backend: Backend) -> None:
    for kwargs, problem in [
        ({}, "either a webhook"),
        ({"webhook": "https://a.gov/h", "email": "x@a.gov"}, "either a webhook"),
        ({"webhook": "file:///etc/passwd"}, "starts with https://"),
        ({"webhook": "https://a.gov/h x"}, "without spaces"),
        ({"email": "not-an-address"}, "does not look like"),
        ({"email": "d@a.gov", "secret": SECRET}, "for a webhook channel only"),
    ]:
        with pytest.raises(InvalidArgument, match=problem):
            channels.create("c1", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="is a target of its own"):
        channels.create("assignee", email="d@a.gov")
    with pytest.raises(InvalidArgument, match="cannot be a queue name"):
        channels.create("user:alice", email="d@a.gov")
    assert channels.shown_url("https://u:p@hooks.slack.com:8443/services/T/B/X?k=v") == "https://hooks.slack.com:8443/…"
    assert channels.shown_url("https://pager.agency.gov") == "https://pager.agency.gov"


def test_a_disabled_channel_or_person_is_named_so_in_a_ladder_and_may_be_enabled_again(backend: Backend) -> None:
    channels.create("oncall-pager", webhook="https://pager.agency.gov/hook", secret=SECRET)
    users.create("eve", ["auditors"], email="eve@agency.gov")
    channels.disable("oncall-pager")
    with database().engine.begin() as conn:
        users.disable(conn, "eve", T0)
    def ladder(*targets: str) -> oms.Workflow:
        return oms.Workflow(id="laddered", steps=[{"id": "s", "sla": "1h", "escalations": [  # type: ignore[list-item]
            {"at": "100%", "notify": list(targets)}]}])

    for target, said in (("oncall-pager", "channel 'oncall-pager' is disabled (oms channel enable oncall-pager)"),
                         ("user:eve", "person 'eve' is disabled (oms user enable eve)"),
                         ("nobody-pager", "no channel 'nobody-pager': create the channel first")):
        with pytest.raises(InvalidDefinition, match=re.escape(said)):
            ladder(target).save()
    assert channels.enable("oncall-pager").disabled_at is None
    users.new_token("eve", enable=True)
    ladder("oncall-pager", "user:eve").save()
    with pytest.raises(UnknownChannel):
        channels.enable("nobody-pager")


def test_the_board_shows_notices_to_admins_and_readers() -> None:
    shell = app_page(name="r", role="reader", csrf="c", csrf_cookie="oms_csrf", csrf_header="X-OMS-CSRF")
    assert 'id="notices"' in shell and 'id="notices-table"' in shell and 'id="f-notices-failed"' in shell
    from importlib.resources import files

    script = files("oms.api").joinpath("static", "page.js").read_text()
    assert '"/v1/notices?"' in script and 'body.dataset.role === "reader"' in script


def test_kick_asks_the_oms_queue_and_never_raises(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    kick()
    if backend.broker_url.startswith("redis://"):  # tests/integration/test_on_postgres.py
        import redis

        with redis.Redis.from_url(backend.broker_url) as client:
            sent = [m.decode() for m in client.lrange("oms", 0, -1)]
    else:
        sent = [p.read_text() for p in (get_settings().broker_folder / "queue").iterdir()]
    assert any('"oms.send_notices"' in text and '"routing_key": "oms"' in text for text in sent), sent
    configure(backend, broker_url="redis://:pw-not-shown@127.0.0.1:1/0")  # nothing listens there
    kick()  # the escalation that called it has committed: the next sweep sends its notices
    assert "could not ask for notices to be sent now" in caplog.text and "pw-not-shown" not in caplog.text


def test_oms_doctor_says_when_notices_are_not_sent_or_were_given_up(backend: Backend) -> None:
    from oms.ops.doctor import notices_check

    now = datetime.now(UTC)
    assert notices_check(now).status == "ok"
    [late] = write("user:nobody", at=now - timedelta(minutes=10))  # due ten minutes ago: no sweep ran
    stuck = notices_check(now)
    assert stuck.status == "fail" and "0 sent and 0 given up in the last 24 h, 1 waiting" in stuck.detail
    assert "has been due for 10m" in stuck.detail and "beat" in stuck.detail
    deliver(now)
    given_up = notices_check(now)
    assert given_up.status == "warn" and "no user is named 'nobody'" in given_up.detail and row(late).status == "failed"
