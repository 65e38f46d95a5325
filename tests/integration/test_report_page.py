"""The page's SLA report in Debian's Chromium, against a real ``oms api`` on PostgreSQL holding a known month.

A reader follows the board's link to the report, picks November 2026, and must see
the counts the event log gives (``tests/sla_month.py``), three charts drawn by the
vendored uPlot under the page's strict CSP, and the worst instances linked to the
instance view. The screenshot is kept in ``test-artifacts/sla-report.png``. Then the
benchmark's month (``benchmarks/report.py``), small, reported as its task table counts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from ..browser import ApiProcess, chromium
from ..conftest import Backend
from ..sla_month import SINCE, UNTIL, build, expected, summary
from .test_page import screenshot, sign_in, token, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def tokens(postgres_backend: Backend) -> dict[str, str]:
    """Made before the API starts (it refuses to start with none): a reader's and a starter's."""
    return {role: token(postgres_backend, role, f"report-{role}") for role in ("reader", "starter")}


@pytest.fixture
def api(postgres_backend: Backend, tokens: dict[str, str], tmp_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess(postgres_backend.env, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    driver = chromium()
    yield driver
    driver.quit()


def _count(driver: WebDriver, step: str, column: str) -> str:
    found = driver.execute_script(
        "const row = document.querySelector(`#report-table tr[data-workflow='permit'][data-step='${arguments[0]}']`);"
        "return row ? row.querySelector('td.' + arguments[1]).innerText : null;", step, column)
    return str(found)


def test_a_reader_opens_the_report_from_the_board_and_sees_the_months_charts(
        postgres_backend: Backend, tokens: dict[str, str], api: ApiProcess, browser: WebDriver) -> None:
    build()
    month = expected()
    totals = summary(month)

    browser.get(api.url + "/")
    sign_in(browser, tokens["starter"])
    wait_for(browser, "#board [data-workflow='permit']")
    assert not browser.find_elements(By.ID, "report-link")  # the board links the report for readers and admins

    browser.delete_all_cookies()
    browser.get(api.url + "/")
    sign_in(browser, tokens["reader"])
    wait_for(browser, "#board [data-workflow='permit']")
    browser.find_element(By.ID, "report-link").click()
    wait_for(browser, "#report-form")
    browser.get(f"{api.url}/#/report?since={SINCE}&until={UNTIL}")
    wait_for(browser, "#report-table tr[data-step='intake']")
    wait_for(browser, "#report-summary", f"{totals['finished']} step(s) finished")
    wait_for(browser, "#report-summary", f"{totals['breaches']} breach(es)")

    for step in ("intake", "review"):
        want = month[("permit", step)]
        assert _count(browser, step, "finished") == str(want.finished)
        assert _count(browser, step, "late") == str(want.finished - want.within)
        assert _count(browser, step, "breaches") == str(want.breaches)
        assert _count(browser, step, "share") == f"{100 * want.within / want.finished:.1f}%"

    # three charts, drawn by uPlot on canvases, with a legend naming the steps (as text) and the SLA line
    charts = browser.execute_script(
        "return ['chart-share', 'chart-p90', 'chart-hours'].map(id => {"
        "  const canvas = document.querySelector('#' + id + ' canvas');"
        "  return canvas ? [canvas.width, canvas.height] : null; });")
    assert all(chart and chart[0] > 300 and chart[1] > 150 for chart in charts), charts
    legend = browser.execute_script("return document.querySelector('#chart-p90 .u-legend').innerText;")
    assert "permit · intake" in legend and "quick · check" in legend and "SLA" in legend
    painted = browser.execute_script(
        "const c = document.querySelector('#chart-hours canvas');"
        "const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let coloured = 0; for (let i = 0; i < data.length; i += 4) {"
        "  if (data[i + 3] > 0 && data[i] > 120 && data[i + 1] < 100) coloured++; } return coloured;")
    assert painted > 200  # the breaches' red bars are drawn
    shot = screenshot(browser, "sla-report.png")
    assert shot.stat().st_size > 20_000
    browser.execute_script("document.getElementById('report-table').scrollIntoView();")
    screenshot(browser, "sla-report-tables.png")

    # the worst instance links to the instance view
    link = browser.find_element(By.CSS_SELECTOR, "#report-worst tbody tr a")
    instance_id = link.text
    link.click()
    wait_for(browser, "#instance-head h2", instance_id)


def test_the_benchmarks_month_is_reported_as_its_tables_count_it(postgres_backend: Backend) -> None:
    """``benchmarks/report.py``'s fill, at 2,000 steps instead of 1M (it times nothing here): the report of its month
    says what the task table says, under the calendar and in wall time."""
    import sys

    from oms import Calendar, Workflow
    from oms.ops.sla_report import sla_report

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks import report as bench

    Calendar(id="bench_office", timezone="America/New_York", hours={"mon-fri": "09:00-17:00"}).save()
    steps = [{"id": f"step{k}", "sla": f"{bench.SLA_MINUTES}m"} for k in range(bench.STEPS)]
    Workflow(id="bench_office", calendar="bench_office", steps=steps).save()
    Workflow(id="bench_wall", steps=steps).save()
    assert bench._fill(2000) == 2000
    report = sla_report(SINCE, UNTIL)
    rows = [row for row in report.rows if row.step_id is not None]
    assert {row.calendar_id for row in rows} == {"bench_office", None} and len(rows) == 8
    counted = (sum(r.finished for r in rows), sum(r.within_sla for r in rows), sum(r.breaches for r in rows))
    assert counted == bench._counted() and 0 < counted[2] < counted[0]
