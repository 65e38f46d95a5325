"""A real ``oms api`` process and Debian's Chromium, for the tests of the operators' page.

The browser is the system's (``chromium`` + ``chromium-driver``, which
``scripts/services`` installs): the driver's path is given to selenium, so its
manager never downloads one. A missing browser fails the test; it is never skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("OMS_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("OMS_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
#: Screenshots the page tests leave behind (gitignored).
ARTIFACTS = ROOT / "test-artifacts"
#: The ports these tests may listen on, ``OMS_TEST_PORTS`` (first-last): scripts/test gives each of the pytest
#: processes it runs side by side a range of its own, since a port probed free is not yet taken.
_FIRST, _LAST = (int(port) for port in os.environ.get("OMS_TEST_PORTS", "8200-8299").split("-"))
PORTS = range(_FIRST, _LAST + 1)


def free_port() -> int:
    """A port of :data:`PORTS` nothing listens on now (tried from a per-process offset, so parallel runs spread)."""
    start = os.getpid() % len(PORTS)
    for offset in range(len(PORTS)):
        port = PORTS[(start + offset) % len(PORTS)]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port in {_FIRST}-{_LAST} (OMS_TEST_PORTS)", pytrace=False)


def oms_command(env: dict[str, str], *args: str) -> str:
    """Run ``oms ARGS`` as a user would (``python -m oms.cli``); its stdout, failing the test on a non-zero exit."""
    done = subprocess.run([sys.executable, "-m", "oms.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"oms {' '.join(args)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class ApiProcess:
    """``oms api --port P`` in a subprocess, its log in a file; ``url`` once it answers."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / "api.log"
        self._out = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oms.cli", "api", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=cwd, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=self._out, stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                pytest.fail(f"oms api exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"oms api did not answer within {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if not self._out.closed:
            self._out.close()


def chromium() -> WebDriver:
    """Headless Chromium under chromedriver, both Debian's; fails (never skips) when they are missing."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            pytest.fail(f"{path} is missing: install Debian's {package} (scripts/services does)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1000",
                     "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
