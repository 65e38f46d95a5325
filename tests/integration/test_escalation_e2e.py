"""Issue 21 end to end: the EPA registration with the inspector's escalation ladder, on PostgreSQL.

A fake clock walks four working days in half-hour scans (``scan_sla(now=...)`` and the
notices' sweep ``deliver(now=...)``, as beat would run them); the receivers are real
servers on loopback: a webhook that checks the signature and is down (503) the first
time, and an SMTP server with STARTTLS. Each rung must fire once, at the first scan
after its moment; the receivers get exactly the notices expected, the pager's retried
once; the supervisor finds the step in her inbox. Then ``oms report`` (a subprocess)
and the page's route must agree with counts made here from the event log.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import oms
from act import complete_task, fetch_task
from oms import Calendar, Workflow, history
from oms.api.app import create_app
from oms.durations import utcnow
from oms.engine import door
from oms.model.files import read_definition
from oms.notify import deliver
from oms.ops.sla_rollups import catch_up
from oms.store import outbox, tokens

from ..browser import oms_command
from ..conftest import Backend
from ..receivers import MailServer, Webhook
from ..workers import ROOT

pytestmark = pytest.mark.integration

WORKFLOW = "epa_waste_reg"
SECRET = "whsec-e2e-0123456789abcdef"
LADDER = [
    {"at": "50%", "notify": ["assignee"]},
    {"at": "75%", "notify": ["group:team_leads"]},
    {"at": "100%", "notify": ["group:supervisors", "oncall-pager"], "reassign": {"groups": ["supervisors"]}},
    {"at": "100% + 1bd", "notify": ["director-mail"]},
]
STEP = 30 * 60  # seconds between two scans of the fake clock


@pytest.fixture
def agency(postgres_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        tuple[Webhook, MailServer]]:
    """People with addresses, the two channels (made with ``oms channel create``), the calendar, and the
    registration with the ladder on ``assign_inspector``; e-mail through the test's SMTP server."""
    mail, pager = MailServer(tmp_path), Webhook(SECRET, answers=[503])
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(mail.cert))
        oms.configure(database_url=postgres_backend.database_url, broker_url=postgres_backend.broker_url,
                      home=postgres_backend.home, smtp_url=mail.url, smtp_from="OMS <oms@agency.gov>",
                      public_url="https://oms.agency.gov")
        oms.create_user("alice", ["inspectors"], email="alice@agency.gov")
        oms.create_user("tom", ["team_leads"], email="tom@agency.gov")
        oms.create_user("sue", ["supervisors"], email="sue@agency.gov", role="supervisor")
        oms_command(postgres_backend.env, "channel", "create", "oncall-pager", "--webhook", pager.url,
                    "--secret", SECRET)
        oms_command(postgres_backend.env, "channel", "create", "director-mail", "--email", "director@agency.gov")
        Calendar.from_file(ROOT / "examples/calendars/epa_business.yaml").save()
        spec = read_definition(ROOT / "examples/workflows/epa_people.yaml")
        [inspect] = [s for s in spec["steps"] if s["id"] == "assign_inspector"]
        inspect["escalations"] = LADDER
        Workflow(**spec).save()
        yield pager, mail
    finally:
        pager.close()
        mail.stop()


def _escalations(instance_id: str) -> list[Any]:
    return [e for e in history(instance_id) if e.kind == "task.escalated"]


def test_the_inspectors_ladder_reaches_people_once_each_and_the_report_agrees_with_the_log(
        postgres_backend: Backend, agency: tuple[Webhook, MailServer]) -> None:
    pager, mail = agency
    instance_id = oms.start_workflow(WORKFLOW, {"form_id": "F8700-12-42"}, business_key="F8700-12-42")
    oms.signal_by_key(WORKFLOW, "F8700-12-42", "form_submitted", {"epa_id": "TXD000012345", "facility": "Acme"})
    for topic in ("validate_tax_id", "charge_fee"):
        task = fetch_task(topic, max_wait=5, worker_id="bot")
        assert task is not None and task.instance_id == instance_id
        complete_task(task.id, {"ok": True}, worker_id="bot")
    [item] = oms.inbox("alice")
    oms.claim(item.task_id, "alice")

    # four working days of scans, half an hour apart, each followed by the notices' sweep
    start = utcnow()
    scans: list[datetime] = []
    now = start
    while len(_escalations(instance_id)) < len(LADDER) or now < start + timedelta(days=8):
        now += timedelta(seconds=STEP)
        oms.scan_sla(now=now)
        deliver(now=now)
        scans.append(now)
        if len(_escalations(instance_id)) == 3 and not oms.inbox("sue"):
            pytest.fail("rung 3 fired but the step is not in the supervisors' queue")
        assert len(scans) < 600, "the ladder did not climb within 12 days of scans"

    # each rung once, in order, at the first scan at or after its moment (in working time: its due_at)
    fired = _escalations(instance_id)
    assert [e.data["rung"] for e in fired] == [1, 2, 3, 4]
    for event in fired:
        due = datetime.fromisoformat(event.data["due_at"])
        first_scan = min(s for s in scans if s >= due)
        assert event.at == first_scan, (event.data, event.at, first_scan)
    assert [t for e in fired for t in (n["target"] for n in e.data.get("notices", []))] == [
        "user:alice", "group:team_leads", "group:supervisors", "oncall-pager", "director-mail"]
    assert fired[2].data["reassigned"] == {"users": [], "groups": ["supervisors"]}

    # the supervisor has it, alice's claim went back; alice no longer sees it
    [queued] = oms.inbox("sue")
    assert queued.task_id == item.task_id and queued.claimed_by is None
    assert not oms.inbox("alice")

    # exactly the notices expected: four e-mails and one pager call, retried once after its 503
    sent = outbox.list_notices(limit=100)
    assert Counter(n.status for n in sent) == Counter({"sent": 5})
    assert sorted(r for m in mail.mails for r in m.recipients) == [
        "alice@agency.gov", "director@agency.gov", "sue@agency.gov", "tom@agency.gov"]
    assert len({m.message["Message-ID"] for m in mail.mails}) == 4
    assert all(m.tls and "F8700-12-42" in m.part("plain") for m in mail.mails)
    first, second = pager.received
    assert (first.status, second.status) == (503, 200) and first.notice_id == second.notice_id
    assert second.signed and second.json()["link"] == f"https://oms.agency.gov/#/instances/{instance_id}"
    pager_notice = next(n for n in sent if n.target == "oncall-pager")
    assert [a.ok for a in outbox.attempts(pager_notice.id)] == [False, True]

    # the supervisor claims and completes it, late
    done_at = scans[-1] + timedelta(hours=1)
    oms.claim(item.task_id, "sue", now=done_at)
    door.complete(item.task_id, {"inspector": "sue", "visit_on": "2026-12-20"}, worker_id="sue", now=done_at)

    # the report, from its rollups, against the event log counted here. The rollup leaves events younger than two
    # seconds for its next pass (one may still be committing): at the fake clock's end, the log is rolled up as a
    # report made then would roll it up; the report below then finds nothing new.
    catch_up(now=done_at + timedelta(minutes=1))
    since, until = (start - timedelta(days=1)).date(), (done_at + timedelta(days=2)).date()
    events = history(instance_id)
    finished = Counter(e.step_id for e in events if e.kind == "task.done")
    breaches = Counter(e.step_id for e in events if e.kind == "task.sla_violated")
    deadline = {t.id: t.expires_at for t in oms.get_instance(instance_id).tasks}
    within = Counter(e.step_id for e in events if e.kind == "task.done" and e.at <= deadline[e.task_id])
    printed = json.loads(oms_command(postgres_backend.env, "report", "--since", since.isoformat(), "--until",
                                     until.isoformat(), "--workflow", WORKFLOW, "--format", "json"))
    rows = {row["step_id"]: row for row in printed["rows"] if row["step_id"] is not None}
    assert {step: row["finished"] for step, row in rows.items()} == dict(finished)
    assert {step: row["within_sla"] for step, row in rows.items()} == {s: within[s] for s in finished}
    assert {step: row["breaches"] for step, row in rows.items() if row["breaches"]} == dict(breaches) == {
        "assign_inspector": 1}
    assert rows["assign_inspector"]["calendar_id"] == "epa_business"
    assert [w["instance_id"] for w in rows["assign_inspector"]["worst"]] == [instance_id]

    reader, _ = tokens.create("reader", name="report-reader")
    with TestClient(create_app()) as client:
        page = client.get("/v1/sla/report", params={"since": since.isoformat(), "until": until.isoformat(),
                                                    "workflow": WORKFLOW},
                          headers={"Authorization": f"Bearer {reader}"})
    assert page.status_code == 200, page.text
    assert page.json()["rows"] == printed["rows"]
