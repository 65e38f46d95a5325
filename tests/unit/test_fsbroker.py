"""The embedded broker's waits: as long as asked, cut short once the worker is told to stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.worker import state as worker_state
from kombu import Connection, Exchange, Queue

from oms.celery.fsbroker import SLICE

STEPS = Queue("steps", Exchange("steps", type="direct"), routing_key="steps")


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[Connection]:
    folder, control = str(tmp_path / "queue"), str(tmp_path / "control")
    Path(folder).mkdir()
    options = {"data_folder_in": folder, "data_folder_out": folder, "control_folder": control,
               "store_processed": False, "polling_interval": 0.01}
    with Connection("filesystem://localhost//", transport="oms.celery.fsbroker:Transport",
                    transport_options=options) as conn:
        yield conn
    worker_state.should_stop = worker_state.should_terminate = None


def _consume(conn: Connection, got: list[object]) -> None:
    conn.Consumer(STEPS, callbacks=[lambda body, message: (got.append(body), message.ack())]).consume()


def test_a_wait_lasts_as_long_as_asked_and_ends_with_the_message(connection: Connection) -> None:
    got: list[object] = []
    _consume(connection, got)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        connection.drain_events(timeout=10 * SLICE)
    assert time.monotonic() - started >= 10 * SLICE  # not one slice: callers outside a worker wait as they asked

    def publish() -> None:
        time.sleep(3 * SLICE)
        with Connection(connection.as_uri(), transport="oms.celery.fsbroker:Transport",
                        transport_options=connection.transport_options) as other:
            other.Producer().publish({"n": 1}, exchange="steps", routing_key="steps", declare=[STEPS])

    threading.Thread(target=publish).start()
    connection.drain_events(timeout=30)
    assert got == [{"n": 1}]


@pytest.mark.parametrize("flag", ["should_stop", "should_terminate"])
def test_a_worker_told_to_stop_stops_waiting_after_one_slice(connection: Connection, flag: str) -> None:
    _consume(connection, [])
    threading.Timer(2 * SLICE, setattr, (worker_state, flag, 0)).start()  # exit code 0 counts
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        connection.drain_events(timeout=60)
    assert time.monotonic() - started < 30, "the wait ran on after the worker was told to stop"
