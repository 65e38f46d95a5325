"""The monthly SLA report: a known month (``tests/sla_month.py``) counted again from the event log, percentiles within
the buckets' precision, the same report after ``oms prune``, its formats, and who may read it over HTTP."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, date, datetime

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from oms.api import create_app
from oms.cli import main
from oms.ops import histograms, retention, sla_rollups
from oms.ops.retention import prune
from oms.ops.sla_report import PRECISION, ReportRow, SlaReport, sla_report
from oms.store import tokens, users
from oms.store.db import transaction
from oms.store.tables import EventRow, InstanceRow, SlaRollupRow

from ..conftest import Backend
from ..sla_month import SINCE, UNTIL, Expected, build, expected, nearest_rank

FRACTIONS = {"p50_s": 0.5, "p90_s": 0.9, "p99_s": 0.99}
#: Everything the month finished, and more: the cutoff of the prunes below.
AFTER_ALL = datetime(2026, 12, 5, tzinfo=UTC)


@pytest.fixture
def month(backend: Backend) -> dict[tuple[str, str | None], Expected]:
    build()
    return expected()


def _rows(report: SlaReport) -> dict[tuple[str, str | None], ReportRow]:
    rows = {(row.workflow_id, row.step_id): row for row in report.rows}
    assert len(rows) == len(report.rows), "one calendar per step in this month"
    return rows


def _assert_counts(report: SlaReport, month: dict[tuple[str, str | None], Expected]) -> None:
    rows = _rows(report)
    assert set(rows) == set(month)
    for key, want in month.items():
        row = rows[key]
        assert (row.finished, row.within_sla, row.late, row.breaches) == (
            want.finished, want.within, want.finished - want.within, want.breaches), key
        if key == ("quick", None):  # no SLA of its own: nothing to be within
            assert row.sla_s is None and row.share_within is None and row.late == 0
        else:
            assert row.share_within == pytest.approx(want.within / want.finished), key
        assert row.over_s == pytest.approx(want.over, abs=0.01), key
        assert row.breach_hours == dict(want.breach_hours), key
        worst = sorted(want.finishes, reverse=True)[:10]
        assert [x for w in row.worst for x in (w.over_s, w.total_s)] == pytest.approx(
            [x for o, t, _ in worst for x in (o, t)], abs=0.001), key
        # the same instances, but where the tenth ties with the eleventh (times are whole seconds or minutes)
        tenth = worst[-1][:2]
        assert {i for o, t, i in want.finishes if (o, t) > tenth} <= {w.instance_id for w in row.worst}, key


def test_counts_shares_and_breaches_equal_those_counted_from_the_event_log(
        month: dict[tuple[str, str | None], Expected]) -> None:
    report = sla_report(SINCE, UNTIL)
    _assert_counts(report, month)
    rows = _rows(report)
    # the month is what it says: both kinds of rows, late ones and breaches under the calendar and in wall time
    assert set(rows) == {("permit", "intake"), ("permit", "review"), ("permit", None), ("quick", "check"),
                         ("quick", None)}
    assert rows[("permit", "intake")].calendar_id == "office" and rows[("quick", "check")].calendar_id is None
    assert rows[("permit", None)].kind == "workflow" and rows[("permit", "intake")].kind == "worker"
    for key in (("permit", "intake"), ("permit", "review"), ("quick", "check")):
        assert 0 < rows[key].late < rows[key].finished and rows[key].breaches > 0, (key, rows[key])
    # the three intakes nobody took breached and stay open: breaches without a finish, counted all the same (a late
    # step's deadline is never after its finish: every late one's breach is in the month too)
    assert rows[("permit", "intake")].breaches >= rows[("permit", "intake")].late + 3
    assert rows[("permit", "intake")].sla_s == 7200 and rows[("quick", "check")].sla_s == 600
    # the whole month's breaches by the hour of the working day: under the calendar, within its opening hours
    assert set(rows[("permit", "intake")].breach_hours) <= set(range(9, 18))
    assert sum(report.breach_hours.values()) == sum(r.breaches for r in report.rows)
    # a link to the page's instance view, per worst instance
    assert all(w.link == f"/#/instances/{w.instance_id}" for row in report.rows for w in row.worst)
    assert any(w.business_key and w.business_key.startswith("P-") for w in rows[("permit", None)].worst)
    # weeks: every finished step is in one ISO week (Mondays), the shares the weeks' own
    weeks = [w for w in report.weeks if (w.workflow_id, w.step_id) == ("permit", "review")]
    assert all(w.week.weekday() == 0 for w in weeks) and len(weeks) == 5
    assert sum(w.finished for w in weeks) == rows[("permit", "review")].finished
    # one workflow, and a period holding nothing
    only = sla_report(SINCE, UNTIL, "quick")
    assert {row.workflow_id for row in only.rows} == {"quick"} and only.rows == [r for r in report.rows
                                                                              if r.workflow_id == "quick"]
    assert sla_report(date(2026, 9, 1), date(2026, 10, 1)).rows == []


def test_percentiles_are_within_the_documented_precision(month: dict[tuple[str, str | None], Expected]) -> None:
    rows = _rows(sla_report(SINCE, UNTIL))
    checked = 0
    for key, want in month.items():
        for figure in ("queue_wait", "run", "total", "over"):
            values = want.figures.get(figure, [])
            for name, fraction in FRACTIONS.items():
                exact = nearest_rank(values, fraction)
                shown = getattr(getattr(rows[key], figure), name)
                if exact is None:
                    assert shown is None, (key, figure, name)
                    continue
                assert abs(shown - exact) <= PRECISION * exact + histograms.FLOOR + 0.001, (key, figure, name, exact)
                checked += 1
    assert checked > 40 and PRECISION < 0.022


def test_histogram_percentiles_over_six_decades() -> None:
    draw = random.Random(7)
    values = [draw.lognormvariate(4, 3) for _ in range(20_000)] + [0.0] * 50
    counts = histograms.of(values)
    for percent in range(1, 100):
        exact = histograms.exact_percentile(values, percent / 100)
        assert exact is not None
        shown = histograms.percentile(counts, percent / 100)
        assert shown is not None and abs(shown - exact) <= PRECISION * exact + histograms.FLOOR, percent
    halves = histograms.of(values[:7000]), histograms.of(values[7000:])
    assert histograms.merge(halves[0], halves[1]) == counts  # days, steps and calendars add up bucket by bucket
    assert histograms.percentile({}, 0.5) is None


def test_the_report_reads_the_same_after_prune(month: dict[tuple[str, str | None], Expected]) -> None:
    before = sla_report(SINCE, UNTIL)
    pruned = prune(AFTER_ALL)
    assert pruned.instances >= 100
    with transaction() as s:
        left = list(s.scalars(select(InstanceRow.status).where(InstanceRow.workflow_id.in_(["permit", "quick"]))))
        assert left == ["running"] * 3  # the three open permits only
        orphans = select(func.count()).select_from(EventRow).where(~EventRow.instance_id.in_(select(InstanceRow.id)))
        assert s.scalar(orphans) == 0  # their events went with them
    assert sla_report(SINCE, UNTIL) == before


def test_prune_rolls_the_log_up_before_it_deletes_it(backend: Backend) -> None:
    build(days=8)
    month = expected()
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(SlaRollupRow)) == 0  # no report has read it yet
    assert prune(AFTER_ALL).instances > 20
    _assert_counts(sla_report(SINCE, UNTIL), month)


def test_an_instance_with_events_not_rolled_up_is_left_for_the_next_prune(backend: Backend) -> None:
    build(days=8)
    sla_rollups.catch_up(now=datetime(2026, 11, 4, tzinfo=UTC))  # the events of 1-3 November only
    with transaction() as s:
        mark = sla_rollups.rolled_up(s)
        kept = set(s.scalars(select(EventRow.instance_id).where(EventRow.id > mark)))
        assert mark > 0 and kept
    deleted, _, _ = retention._prune_batch(AFTER_ALL, 10_000)
    with transaction() as s:
        remaining = set(s.scalars(select(InstanceRow.id)))
    assert deleted > 0 and kept <= remaining


def test_beat_keeps_the_rollups_caught_up(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """``oms.roll_up`` is on beat's schedule (``OMS_ROLLUP_INTERVAL``): it adds what is new to the rollups, so the
    report that follows finds nothing left to read."""
    from oms.celery.config import beat_schedule
    from oms.ops.tasks import roll_up_task
    from oms.settings import OmsSettings

    entry = beat_schedule(OmsSettings())["oms-roll-up"]
    assert (entry["task"], entry["schedule"], entry["options"]["queue"]) == ("oms.roll_up", 300.0, "oms")
    monkeypatch.setenv("OMS_ROLLUP_INTERVAL", "60")
    assert beat_schedule(OmsSettings())["oms-roll-up"]["schedule"] == 60.0

    build(days=3)
    month = expected()
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(SlaRollupRow)) == 0
        events = list(s.scalars(select(EventRow.id)))
    assert roll_up_task() == len(events)
    with transaction() as s:
        assert sla_rollups.rolled_up(s) == max(events)
        assert s.scalar(select(func.count()).select_from(SlaRollupRow)) > 0
    assert roll_up_task() == 0  # caught up: nothing new
    _assert_counts(sla_report(SINCE, UNTIL), month)


def _oms(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (args, result.output, result.stderr)
    return result.stdout


def test_oms_report_as_json_csv_html_and_a_table(month: dict[tuple[str, str | None], Expected]) -> None:
    period = ["report", "--since", "2026-11-01", "--until", "2026-12-01"]
    report = sla_report(SINCE, UNTIL)
    assert json.loads(_oms(*period, "--format", "json")) == json.loads(report.model_dump_json())

    lines = list(csv.DictReader(io.StringIO(_oms(*period, "--format", "csv"))))
    assert len(lines) == len(report.rows)
    for line in lines:
        want = month[(line["workflow"], line["step"] or None)]
        assert (int(line["finished"]), int(line["within_sla"]), int(line["breaches"])) == (
            want.finished, want.within, want.breaches)
        exact = nearest_rank(want.figures["total"], 0.9)
        assert exact is not None and abs(float(line["total_p90_s"]) - exact) <= PRECISION * exact + 0.002
        row = _rows(report)[(line["workflow"], line["step"] or None)]
        assert line["worst_instances"].split() == [w.instance_id for w in row.worst]  # as in JSON, late or not
    assert any(row.worst and not any(w.over_s for w in row.worst) for row in report.rows)  # one never late

    page = _oms(*period, "--format", "html", "--base-url", "https://oms.example.org/")
    assert page.startswith("<!doctype html>") and page.count("<tr>") > len(report.rows)
    intake = _rows(report)[("permit", "intake")]
    assert f'<a href="https://oms.example.org/#/instances/{intake.worst[0].instance_id}">' in page
    assert "(whole workflow)" in page and "office" in page and "within 2.2%" in " ".join(page.split())

    table = _oms(*period, "--workflow", "permit")
    assert "permit" in table and "quick" not in table and "The worst instances" in table
    assert intake.share_within is not None and f"{100 * intake.share_within:.1f}%" in table

    refused = CliRunner().invoke(main, ["report", "--since", "2026-12-01", "--until", "2026-11-01"])
    assert refused.exit_code == 1 and refused.stderr.startswith("error: until (2026-11-01) must be after since")
    bad = CliRunner().invoke(main, ["report", "--since", "November", "--until", "2026-12-01"])
    assert bad.exit_code == 1 and "is not a date" in bad.stderr


def test_the_route_serves_the_reading_roles_and_refuses_the_others(backend: Backend) -> None:
    build(days=3)
    keys = {}
    for role in ("admin", "starter", "reader", "worker", "signaller"):
        secret, _ = tokens.create(role, name=f"t-{role}", topics=["check"] if role == "worker" else None)
        keys[role] = {"Authorization": f"Bearer {secret}"}
    for role in users.ROLES:
        secret, _ = users.create(f"p-{role}", ["inspectors"], role=role)
        keys[role] = {"Authorization": f"Bearer {secret}"}
    path = "/v1/sla/report?since=2026-11-01&until=2026-12-01"
    with TestClient(create_app()) as client:
        assert client.get(path).status_code == 401
        for role, headers in keys.items():
            response = client.get(path, headers=headers)
            if role in ("admin", "starter", "reader"):
                assert response.status_code == 200, (role, response.text)
                assert response.json() == json.loads(sla_report(SINCE, UNTIL).model_dump_json())
            else:
                assert response.status_code == 403 and response.json()["error"] == "Forbidden", role
        only = client.get(path + "&workflow=permit", headers=keys["reader"]).json()
        assert {row["workflow_id"] for row in only["rows"]} == {"permit"} and only["workflow"] == "permit"
        assert client.get("/v1/sla/report?since=2026-11-01", headers=keys["reader"]).status_code == 422
        backwards = client.get("/v1/sla/report?since=2026-12-01&until=2026-11-01", headers=keys["reader"])
        assert backwards.status_code == 422 and "must be after" in backwards.json()["detail"]
        documented = client.get("/openapi.json").json()["paths"]["/v1/sla/report"]["get"]["responses"]
        assert {"200", "401", "403", "422"} <= set(documented)
