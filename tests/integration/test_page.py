"""The operators' page in a real browser: Debian's Chromium against a real ``oms api`` and a real worker.

A step is held by a pull worker past its 3-second SLA and scanned red; the page
must say "red" in words. The step is then completed and the open page must show
the instance done without being reloaded. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from celery import chain
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select, WebDriverWait

import oms
from act import complete_task, fail_task, fetch_task
from oms import Workflow, get_instance, scan_sla, start_workflow, start_workflows

from ..browser import ARTIFACTS, ApiProcess, chromium, free_port, oms_command
from ..conftest import Backend
from ..track_tasks import add, mul
from ..workers import WorkerProcess

pytestmark = pytest.mark.integration

#: ``review`` is pulled by the test itself and held past its SLA; the other two are pushed to the worker.
WORKFLOW = {
    "id": "page_epa",
    "steps": [
        {"id": "collect_form", "sla": "1m"},
        {"id": "review", "sla": "3s", "warn_at": "1s"},
        {"id": "assign_inspector", "sla": "1m"},
    ],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture
def admin_token(postgres_backend: Backend) -> str:
    """Made before the API starts: ``oms api`` refuses to start with no token defined."""
    return token(postgres_backend, "admin", "page-admin")


@pytest.fixture
def api(postgres_backend: Backend, admin_token: str, tmp_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess(postgres_backend.env, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def page(browser: WebDriver, api: ApiProcess) -> WebDriver:
    """The browser at the API's page, with no session left from another test."""
    browser.get(api.url + "/")
    browser.delete_all_cookies()
    browser.get(api.url + "/")
    return browser


def token(backend: Backend, role: str, name: str) -> str:
    """A new token from ``oms token create``, which prints it once."""
    return oms_command(backend.env, "token", "create", "--role", role, "--name", f"{name}-{time.monotonic_ns()}").strip()


def sign_in(driver: WebDriver, secret: str) -> None:
    """Submit the token form and wait for the answer's document (the board, or the form with its error)."""
    form = driver.find_element(By.ID, "login-form")
    driver.find_element(By.ID, "token").send_keys(secret)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    WebDriverWait(driver, 20).until(lambda _: gone(form))


def gone(element: WebElement) -> bool:
    """Whether ``element``'s document was replaced. Selenium's ``staleness_of`` misses one way Chromium says so:
    asked about a node while the new document loads, it answers "Node with given id does not belong to the
    document" as an unknown error, not a stale element."""
    try:
        return staleness_of(element)(None)
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise


def wait_for(driver: WebDriver, css: str, text: str | None = None, timeout: float = 20) -> str:
    """Wait until an element matches ``css`` (and holds ``text``); return its text.

    The texts are read in one script call: the page redraws every 2 s, so an element
    found in one call may be gone by the next.
    """
    read = "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText);"

    def found(d: WebDriver) -> str | bool:
        for shown in d.execute_script(read, css):
            if text is None or text in shown:
                return str(shown) or True
        return False

    try:
        result = WebDriverWait(driver, timeout, poll_frequency=0.2).until(found)
    except TimeoutException:
        shot = screenshot(driver, f"timeout-{time.time_ns()}.png")
        body = driver.execute_script("return document.body.innerText;")
        pytest.fail(f"no {css!r} holding {text!r} within {timeout}s (screenshot {shot}); the page: {body[:600]!r}")
    return str(result)


def screenshot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def test_a_step_turns_red_then_the_instance_done_without_a_reload(
    postgres_backend: Backend, api: ApiProcess, admin_token: str, page: WebDriver, tmp_path: Path
) -> None:
    Workflow.model_validate(WORKFLOW).save()
    worker = WorkerProcess(postgres_backend.env, tmp_path, ["collect_form", "assign_inspector"], concurrency=1)
    try:
        sign_in(page, admin_token)
        wait_for(page, "#board [data-workflow='page_epa']")
        instance_id = start_workflow("page_epa", payload={"form_id": "F8700-12-42"})
        page.get(f"{api.url}/#/instances/{instance_id}")
        wait_for(page, "#instance-status", "running")
        task = fetch_task("review", max_wait="30s", lease="5m", worker_id="page-test-reviewer")
        assert task is not None and task.instance_id == instance_id
        time.sleep(max(0.0, (task.expires_at - datetime.now(UTC)).total_seconds()) + 0.2)
        scan_sla()
        assert get_instance(instance_id).steps[1].light == "red"

        red = wait_for(page, "#timeline [data-step='review'] .step-head .light-red", "red")
        assert "red" in red  # the word, not only the colour
        assert "red" in wait_for(page, "#instance-light", "red")
        assert page.find_elements(By.CSS_SELECTOR, "#cancel-button"), "an admin sees Cancel on a running instance"
        assert "worker page-test-reviewer" in wait_for(page, "[data-task] .facts", "page-test-reviewer")
        assert "task.sla_violated" in wait_for(page, "#events", "task.sla_violated")
        screenshot(page, "page-red.png")

        page.execute_script("window.omsSamePage = true;")
        complete_task(task.id, worker_id="page-test-reviewer")
        wait_for(page, "#instance-status", "done", timeout=30)
        assert page.execute_script("return window.omsSamePage === true;"), "the page was reloaded"
        assert not page.find_elements(By.CSS_SELECTOR, "#cancel-button")
        screenshot(page, "page-done.png")

        page.find_element(By.LINK_TEXT, "← all workflows").click()
        breaches = wait_for(page, "#board [data-workflow='page_epa'] tr[data-step='review'] td:last-child", "1")
        assert breaches == "1"
        wait_for(page, f"#instances tr[data-instance='{instance_id}']", "done")
        assert page.execute_script("return window.omsSamePage === true;")
        screenshot(page, "page-board.png")
        # the breach's escalation is an instance too: left out of the list unless asked for
        listed = "return Array.from(document.querySelectorAll('#instances tbody tr'), r => r.innerText).join('\\n');"
        assert "oms.sla_violation" not in page.execute_script(listed)
        Select(page.find_element(By.ID, "f-escalations")).select_by_visible_text("shown")
        wait_for(page, "#instances tbody tr", "oms.sla_violation")
    finally:
        worker.stop()


def test_an_unknown_token_gets_an_error_and_no_session(page: WebDriver) -> None:
    sign_in(page, "not-a-token")  # an admin token exists (see admin_token); this is not it
    assert "Unknown or revoked token" in wait_for(page, "#login-error")
    assert page.get_cookie("oms_token") is None
    assert page.find_elements(By.ID, "token"), "still the sign-in form"


def test_a_reader_pages_and_filters_but_sees_no_cancel_or_retry(
    postgres_backend: Backend, api: ApiProcess, page: WebDriver
) -> None:
    Workflow.model_validate(WORKFLOW).save()
    started = start_workflows("page_epa", [{"n": n} for n in range(25)])  # no worker: they stay running
    sign_in(page, token(postgres_backend, "reader", "page-reader"))
    wait_for(page, "#instances tr[data-instance]", "running")
    rows = "return Array.from(document.querySelectorAll('#instances tbody tr[data-instance]'), r => r.dataset.instance);"
    newest = page.execute_script(rows)
    assert len(newest) == 20  # 20 a page
    page.find_element(By.ID, "page-older").click()
    wait_for(page, "#page-number", "page 2")
    WebDriverWait(page, 10).until(lambda d: len(d.execute_script(rows)) == 5)
    assert set(newest) | set(page.execute_script(rows)) == set(started)
    Select(page.find_element(By.ID, "f-status")).select_by_visible_text("done")
    wait_for(page, "#instances tbody", "No instance matches.")
    assert "page 1" in page.find_element(By.ID, "page-number").text  # a new filter starts from the newest

    page.get(f"{api.url}/#/instances/{started[0]}")
    wait_for(page, "#instance-status", "running")
    wait_for(page, "#timeline [data-step='collect_form']")
    assert page.find_elements(By.CSS_SELECTOR, "#instance-actions button") == []
    assert "(reader)" in page.find_element(By.CSS_SELECTOR, ".who").text

    page.find_element(By.CSS_SELECTOR, "header form button").click()  # Sign out
    wait_for(page, "#login-form")
    assert page.get_cookie("oms_token") is None


class _Attacker(BaseHTTPRequestHandler):
    """Another origin's page: a form that posts to the API's cancel route, as a cross-site attack would."""

    target = ""

    def do_GET(self) -> None:
        body = (f'<!doctype html><form method="post" action="{self.target}">'
                '<button id="attack" type="submit">win a prize</button></form>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_cross_site_post_without_the_csrf_header_is_refused(
    api: ApiProcess, admin_token: str, page: WebDriver
) -> None:
    Workflow.model_validate(WORKFLOW).save()
    instance_id = start_workflow("page_epa", payload={})
    sign_in(page, admin_token)
    wait_for(page, f"#instances tr[data-instance='{instance_id}']")
    cancel = f"{api.url}/v1/instances/{instance_id}/cancel"

    # another site (same host, another port: the same "site", so even SameSite cookies go along)
    handler = type("Attacker", (_Attacker,), {"target": cancel})
    evil = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        page.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        page.find_element(By.ID, "attack").click()
        WebDriverWait(page, 10).until(lambda d: d.current_url.startswith(cancel))
        # the cookie went along (same site), so it is the CSRF check that refused it, not a missing session
        assert '"error":"CsrfFailed"' in page.find_element(By.TAG_NAME, "body").text.replace(" ", "")
    finally:
        evil.shutdown()
        evil.server_close()
    assert get_instance(instance_id).status == "running"

    # this page's own script, forgetting the header, is refused too
    page.get(api.url + "/")
    wait_for(page, "#board")
    post = "return fetch(arguments[0], {method: 'POST', credentials: 'same-origin'}).then(r => r.status);"
    assert page.execute_script(post, cancel) == 403
    assert get_instance(instance_id).status == "running"
    # the page's Cancel button sends it, and works
    page.get(f"{api.url}/#/instances/{instance_id}")
    wait_for(page, "#cancel-button")
    page.find_element(By.ID, "cancel-button").click()
    wait_for(page, "#instance-status", "cancelled")
    assert get_instance(instance_id).status == "cancelled"


def test_an_admin_retries_a_failed_instance_from_the_page(api: ApiProcess, admin_token: str, page: WebDriver) -> None:
    Workflow.model_validate(WORKFLOW).save()
    instance_id = start_workflow("page_epa", payload={})
    task = fetch_task("collect_form", max_wait="10s", worker_id="page-test-clerk")
    assert task is not None and task.instance_id == instance_id
    fail_task(task.id, reason="<b>form unreadable</b>", worker_id="page-test-clerk")
    sign_in(page, admin_token)
    page.get(f"{api.url}/#/instances/{instance_id}")
    wait_for(page, "#instance-status", "failed")
    assert "<b>form unreadable</b>" in wait_for(page, "[data-task] .facts", "form unreadable")  # shown as text
    assert not page.find_elements(By.CSS_SELECTOR, "#timeline b")
    assert not page.find_elements(By.ID, "cancel-button")
    page.find_element(By.ID, "retry-button").click()
    wait_for(page, "#instance-status", "running")
    wait_for(page, "#timeline [data-step='collect_form']", "2 attempt(s)")
    assert get_instance(instance_id).status == "running"


def test_a_tracked_step_with_no_sla_of_its_own_is_green_and_says_so(api: ApiProcess, admin_token: str,
                                                                     page: WebDriver) -> None:
    instance_id = oms.track(chain(add.s(1, 2), mul.s(3)), workflow="page_tracked", sla="30m")  # add: no SLA
    sign_in(page, admin_token)
    page.get(f"{api.url}/#/instances/{instance_id}")
    wait_for(page, "#instance-status", "running")
    assert "no SLA of its own" in wait_for(page, "[data-task] .facts", "no SLA of its own")
    assert "green" in wait_for(page, "#timeline [data-step='add'] .step-head", "green")
    assert not page.find_elements(By.CSS_SELECTOR, "#timeline [data-step='add'] .light-red")


def test_the_interactive_docs_render_from_the_server_alone(api: ApiProcess, browser: WebDriver) -> None:
    """``/docs`` (Swagger UI) loads its scripts from the API itself, not a CDN: every resource the browser fetched
    is the API's, and Swagger UI draws the operations of the OpenAPI 3.1 schema."""
    browser.get(api.url + "/docs")
    operations = WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))
    assert len(operations) > 20
    assert "/v1/topics/{topic}/fetch" in browser.find_element(By.TAG_NAME, "body").text
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched and all(url.startswith(api.url) for url in fetched), fetched


def test_the_board_lists_notices_for_a_reader_and_not_for_a_starter(
    postgres_backend: Backend, api: ApiProcess, page: WebDriver
) -> None:
    from oms.durations import utcnow
    from oms.notify import deliver
    from oms.store import channels
    from oms.store.db import database
    from oms.store.notices import Notice, add

    from ..receivers import Webhook

    receiver = Webhook("s3cret-for-the-page")
    try:
        channels.create("oncall-pager", webhook=receiver.url, secret="s3cret-for-the-page")
        facts = {"light": "red", "deadline": "2026-12-06T00:10:00+00:00", "overdue_by_s": 30.0}
        with database().engine.begin() as conn:
            sent, failed = add(conn, [Notice(workflow_id="page_epa", target=t, facts=facts, instance_id="wf-" + "d" * 32,
                                             step_id="review") for t in ("oncall-pager", "user:nobody")], utcnow())
        assert deliver().sent == 1
    finally:
        receiver.close()
    sign_in(page, token(postgres_backend, "reader", "page-notices"))
    wait_for(page, f"#notices-table tr[data-notice='{sent}']", "sent")
    shown = wait_for(page, f"#notices-table tr[data-notice='{failed}']", "no user is named 'nobody'")
    assert "user:nobody" in shown and "failed" in shown and "■ red" in shown
    page.find_element(By.ID, "f-notices-failed").click()  # failed only
    WebDriverWait(page, 10).until(lambda d: not d.find_elements(By.CSS_SELECTOR, f"tr[data-notice='{sent}']"))
    assert page.find_elements(By.CSS_SELECTOR, f"tr[data-notice='{failed}']")
    screenshot(page, "notices-reader.png")
    page.find_element(By.CSS_SELECTOR, "header form button").click()  # Sign out
    wait_for(page, "#login-form")

    sign_in(page, token(postgres_backend, "starter", "page-starter"))  # GET /v1/notices is not a starter's
    wait_for(page, "#status-line", "updated")
    assert not page.find_element(By.ID, "notices").is_displayed()
    assert "could not refresh" not in page.find_element(By.ID, "status-line").text
