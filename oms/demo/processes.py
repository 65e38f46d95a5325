"""The demo's processes: a Celery worker with beat, and the pull worker. Each logs to a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..settings import ENGINE_QUEUE, get_settings
from .workflow import PUSH_TOPICS, SCAN_INTERVAL


class DemoError(Exception):
    """A demo process could not start; the message names its log."""


class Process:
    """A child process in its own session, its output in ``log``."""

    def __init__(self, name: str, command: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.log = name, log
        with log.open("w") as out:
            self.popen = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)

    def wait_for(self, marker: str, timeout: float) -> None:
        """Wait until ``marker`` appears in the log; raise ``DemoError`` if the process dies or is slow."""
        deadline = time.monotonic() + timeout
        while marker not in self.log.read_text(errors="replace"):
            if self.popen.poll() is not None:
                raise DemoError(f"the {self.name} exited with code {self.popen.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise DemoError(f"the {self.name} was not ready after {timeout:.0f}s; see {self.log}")
            time.sleep(0.1)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (a Celery worker's warm shutdown), then SIGKILL to the group after ``grace``."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def start_processes(escalation_topics: list[str]) -> list[Process]:
    """Start the worker (push steps, escalations, the SLA scan every second) and the tax validator."""
    settings = get_settings()
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    # the database and broker this process uses, also where they came from an attached app's configuration
    env = {**os.environ, "OMS_SLA_SCAN_INTERVAL": str(SCAN_INTERVAL), "PYTHONUNBUFFERED": "1",
           "OMS_DATABASE_URL": settings.database_url, "OMS_BROKER_URL": settings.broker_url}
    queues = [ENGINE_QUEUE, *PUSH_TOPICS, *escalation_topics]
    worker = Process(
        "Celery worker",
        [sys.executable, "-m", "celery", "-A", os.environ.get("OMS_CELERY_APP") or "oms", "worker",
         "-B", "-s", str(home / "demo-beat-schedule"),
         "-Q", ",".join(queues), "-I", "oms.demo.handlers", "-c", "2", "-n", "demo@%h", "-l", "info",
         "--without-mingle", "--without-gossip"],
        home / "demo-worker.log", env,
    )
    validator = Process("tax validator", [sys.executable, "-m", "oms.demo.tax_validator"],
                        home / "demo-tax-validator.log", env)
    processes = [worker, validator]
    try:
        worker.wait_for(" ready.", 60)
        validator.wait_for("ready", 30)
    except BaseException:
        stop_processes(processes)
        raise
    return processes


def stop_processes(processes: list[Process]) -> None:
    for process in reversed(processes):
        process.stop()
