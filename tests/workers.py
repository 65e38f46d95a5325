"""Real ``celery worker`` processes for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from oms.states import FINISHED_INSTANCE

ROOT = Path(__file__).resolve().parent.parent


def _process_env(env: dict[str, str]) -> dict[str, str]:
    """The test's environment and ``env``, with the checkout first on ``PYTHONPATH`` (then any path ``env`` gives)."""
    return {**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}


class BeatProcess:
    """``celery -A oms beat`` (or ``-A <app>``) in a subprocess: sends ``oms.scan_sla`` every ``OMS_SLA_SCAN_INTERVAL``.

    Its log and schedule go to ``cwd``; the process runs in ``workdir`` (a project's folder) when given.
    """

    def __init__(self, env: dict[str, str], cwd: Path, name: str = "beat", *, app: str = "oms",
                 workdir: Path | None = None) -> None:
        self.log = cwd / f"{name}.log"
        self._out = self.log.open("w")
        command = [sys.executable, "-m", "celery", "-A", app, "beat", "-l", "info", "-s", str(cwd / f"{name}-schedule")]
        self.process = subprocess.Popen(command, cwd=workdir or cwd, env=_process_env(env),
                                        stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(15)
        self._out.close()


class WorkerProcess:
    """``celery -A oms worker`` (or ``-A <app>``) in a subprocess, its log in a file under ``cwd``.

    ``modules`` are imported with ``-I`` (``None``: only what the app imports itself); the
    process runs in ``workdir`` (a project's folder) when given.
    """

    def __init__(self, env: dict[str, str], cwd: Path, queues: list[str], *, modules: str | None = "tests.handlers",
                 pool: str = "prefork", concurrency: int = 2, name: str = "w1", extra: list[str] | None = None,
                 app: str = "oms", workdir: Path | None = None) -> None:
        self.log = cwd / f"worker-{name}.log"
        command = [
            sys.executable, "-m", "celery", "-A", app, "worker", "-Q", ",".join(queues),
            *(["-I", modules] if modules else []),
            "-P", pool, "-c", str(concurrency), "-n", f"{name}@%h", "-l", "info",
            "--without-mingle", "--without-gossip", *(extra or []),
        ]
        self._out = self.log.open("w")
        self._asked = False
        full = _process_env(env)
        self._embedded = full.get("OMS_BROKER_URL", "").startswith("filesystem")
        self.process = subprocess.Popen(command, cwd=workdir or cwd, env=full, stdout=self._out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log.read_text():
                return
            if self.process.poll() is not None:
                pytest.fail(f"worker exited with {self.process.returncode}:\n{self.log.read_text()}")
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"worker not ready after {timeout}s:\n{self.log.read_text()}")

    def children(self) -> list[int]:
        """Pids of the pool's child processes."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def kill(self) -> None:
        """``kill -9`` the whole worker (main process and pool)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._out.close()

    def terminate(self) -> None:
        """Ask it to stop (once), without waiting: :func:`stop_all` stops several at once.

        ``SIGTERM`` to the whole process group: a pool child running a task dies at once,
        and Celery acknowledges its message as failed (``WorkerLostError``) rather than
        leaving it to be delivered to the next test's worker. But on the embedded broker
        only the main process is told: its prefork pool (a transport without an event
        loop) shares one task queue, and a child killed while it held that queue's lock
        left the main process waiting on it at exit, until the ``SIGKILL`` 15 s later.
        """
        if not self._asked and self.process.poll() is None:
            self._asked = True
            if self._embedded:
                self.process.send_signal(signal.SIGTERM)
            else:
                os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        """Stop it (:meth:`terminate`), wait for its warm shutdown, then kill what is left."""
        if self._out.closed:
            return
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # a child its main process left behind
        self._out.close()


def stop_all(processes: Iterable[WorkerProcess]) -> None:
    """Stop workers together: each warm shutdown takes seconds (the pool's threads), and they overlap."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        process.stop()


def wait_finished(
    instance_ids: list[str], timeout: float = 60, poll: Callable[[], None] | None = None
) -> dict[str, str]:
    """Poll until every instance is final; return ``{id: status}`` (failing the test on timeout).

    ``poll`` runs on every round (e.g. to restart workers that exited).
    """
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from oms.store.db import transaction
    from oms.store.tables import InstanceRow

    deadline = time.monotonic() + timeout
    wanted = set(instance_ids)
    statuses: dict[str, str] = {}
    while True:
        try:
            with transaction() as session:
                rows = session.execute(
                    select(InstanceRow.id, InstanceRow.status).where(InstanceRow.id.in_(wanted))
                ).all()
            statuses = dict(rows)
        except OperationalError:  # the database is being restarted by a fault-injection test
            time.sleep(0.5)
            continue
        if all(statuses.get(i) in {s.value for s in FINISHED_INSTANCE} for i in wanted):
            return statuses
        if time.monotonic() > deadline:
            pending = {i: s for i, s in statuses.items() if s not in {s.value for s in FINISHED_INSTANCE}}
            pytest.fail(f"{len(pending)} instance(s) not finished after {timeout}s, e.g. {list(pending.items())[:3]}")
        if poll is not None:
            poll()
        time.sleep(0.05)
