"""The page's routes without a browser: the token form, its cookies, the Origin and CSRF checks, escaping."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from oms.api import page
from oms.api.auth import CSRF_COOKIE, TOKEN_COOKIE, Principal

TOKENS = {"good": Principal(name="<script>alert(1)</script>", role="admin", topics=None),
          "alice": Principal(name="<b>alice</b>", role="person", topics=None, groups=("inspectors",)),
          "dave": Principal(name="dave", role="supervisor", topics=None, groups=("supervisors",)),
          "reader": Principal(name="r", role="reader", topics=None)}
#: The scripts the page serves: each must be listed in page.STATIC, and none may write markup.
SCRIPTS = ("common.js", "page.js", "work.js", "form.js", "report.js")
#: The libraries shipped with the page (static/vendor/README.md names their versions, licences and sums).
VENDOR = ("uPlot.iife.min.js", "uPlot.min.css")


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The page's routes alone, in process: no server, no database (tokens from :data:`TOKENS`)."""
    monkeypatch.setattr(page, "lookup", TOKENS.get)
    app = FastAPI()
    app.include_router(page.router)
    with TestClient(app, follow_redirects=False) as client:
        yield client


def test_the_form_when_signed_out_with_a_strict_content_security_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and 'action="/login"' in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_an_unknown_token_gets_the_form_again_and_no_cookie(client: TestClient) -> None:
    response = client.post("/login", data={"token": "bad"})
    assert response.status_code == 401 and "Unknown or revoked token" in response.text
    assert "set-cookie" not in response.headers


def test_a_good_token_sets_an_httponly_strict_cookie_and_a_readable_csrf_cookie(client: TestClient) -> None:
    response = client.post("/login", data={"token": "good"})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    assert "HttpOnly" in cookies[TOKEN_COOKIE] and "SameSite=strict" in cookies[TOKEN_COOKIE]
    assert "HttpOnly" not in cookies[CSRF_COOKIE] and "SameSite=strict" in cookies[CSRF_COOKIE]


def test_the_shell_escapes_what_it_shows(client: TestClient) -> None:
    client.post("/login", data={"token": "good"})
    response = client.get("/")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text and "<script>alert" not in response.text
    assert 'data-role="admin"' in response.text and '<script src="/static/page.js">' in response.text


def test_a_person_gets_my_work_and_the_others_the_board(client: TestClient) -> None:
    """The shell is picked by role: a person's or a supervisor's token gets My work (its scripts after
    common.js); every other role the operators' board."""
    for who, work in (("alice", True), ("dave", True), ("reader", False), ("good", False)):
        client.cookies.clear()
        client.post("/login", data={"token": who})
        shell = client.get("/").text
        scripts = [line for line in shell.splitlines() if line.startswith("<script")]
        if work:
            assert 'id="inbox"' in shell and 'id="board"' not in shell and "My work" in shell
            assert scripts == ['<script src="/static/common.js"></script>', '<script src="/static/form.js"></script>',
                               '<script src="/static/work.js"></script>']
        else:
            assert 'id="board"' in shell and 'id="f-business_key"' in shell and 'id="inbox"' not in shell
            assert scripts == ['<script src="/static/common.js"></script>',
                               '<script src="/static/vendor/uPlot.iife.min.js"></script>',
                               '<script src="/static/report.js"></script>', '<script src="/static/page.js"></script>']
            assert ('id="report-link"' in shell) == (who in ("reader", "good"))
    client.cookies.clear()
    client.post("/login", data={"token": "alice"})
    assert "&lt;b&gt;alice&lt;/b&gt;" in client.get("/").text


def test_another_sites_form_can_neither_sign_in_nor_out(client: TestClient) -> None:
    evil = {"Origin": "http://evil.example"}
    assert client.post("/login", data={"token": "good"}, headers=evil).status_code == 403
    client.post("/login", data={"token": "good"})
    csrf = client.cookies[CSRF_COOKIE]
    assert client.post("/logout", data={"csrf": csrf}, headers=evil).status_code == 403
    assert client.post("/logout", data={"csrf": "guess"}).status_code == 403
    response = client.post("/logout", data={"csrf": csrf})
    assert response.status_code == 303
    assert all("Max-Age=0" in c or "expires=" in c.lower() for c in response.headers.get_list("set-cookie"))


def test_only_the_listed_static_files_are_served(client: TestClient) -> None:
    for name in SCRIPTS:
        script = client.get(f"/static/{name}")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert set(page.STATIC) == {*SCRIPTS, "page.css", *(f"vendor/{name}" for name in VENDOR)}
    assert client.get("/static/page.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/html.py").status_code == 404
    assert client.get("/static/..%2Fhtml.py").status_code == 404


def test_the_script_never_writes_markup() -> None:
    """Server data reaches the page as text only: no innerHTML, outerHTML, insertAdjacentHTML or document.write."""
    for name in SCRIPTS:
        script = files("oms.api").joinpath("static", name).read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in script, (name, sink)


def test_the_chart_library_is_served_from_the_package_as_packed(client: TestClient) -> None:
    """uPlot's files are served from the package (no CDN), byte for byte as npm packed them, with its licence and
    version noted beside them; nothing else in the folder is served."""
    import hashlib

    folder = files("oms.api").joinpath("static", "vendor")
    notes = folder.joinpath("README.md").read_text()
    assert "| 1.6.32 | MIT (`uPlot.LICENSE`)" in notes
    assert "Permission is hereby granted" in folder.joinpath("uPlot.LICENSE").read_text()
    for name, kind in zip(VENDOR, ("text/javascript", "text/css")):
        served = client.get(f"/static/vendor/{name}")
        assert served.status_code == 200 and served.headers["content-type"].startswith(kind)
        assert f"{hashlib.sha256(served.content).hexdigest()}  {name}" in notes
    assert client.get("/static/vendor/README.md").status_code == 404
    assert client.get("/static/vendor/uPlot.js").status_code == 404
