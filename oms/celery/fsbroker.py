"""The embedded broker: kombu's filesystem transport, with each message written atomically.

kombu writes a message file in place (create, lock, write). A consumer polling
the folder can take the file between create and write, read it empty and stop
with ``JSONDecodeError``, and the message is lost. Here a message is written
under a name consumers skip, then renamed into place: a file they see is whole.

A worker on it stops promptly: Celery's loop for a transport with no event loop
waits for messages two seconds at a time, and looks for a shutdown only between
two waits (and waits once more as it leaves), so a stopped worker sat idle up to
four seconds. Here a wait is cut into short slices, and ends once the worker is
told to stop; for any other caller it lasts as long as asked.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from celery.worker import state as worker_state
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # consumers take only names of the form '<id>.<queue>.msg': this one they skip
        partial = os.path.join(self.data_folder_out, f".partial-{uuid.uuid4().hex}")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))  # type: ignore[no-untyped-call]
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


#: Seconds a wait for messages lasts before it looks whether the worker is stopping.
SLICE = 0.1


def _stopping() -> bool:
    """Whether this process is a Celery worker told to stop (warm or cold); exit code 0 counts."""
    return any(flag is not None and flag is not False
               for flag in (worker_state.should_stop, worker_state.should_terminate))


class Transport(filesystem.Transport):
    Channel = Channel

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        """Wait for a message up to ``timeout`` (``None``: until one comes), in slices of :data:`SLICE`; a worker
        told to stop gets ``TimeoutError`` (``socket.timeout``) after the current slice."""
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            wait = SLICE if deadline is None else max(0.0, min(SLICE, deadline - monotonic()))
            try:
                super().drain_events(connection, timeout=wait, **kwargs)  # type: ignore[no-untyped-call]
                return
            except TimeoutError:
                if _stopping() or (deadline is not None and monotonic() >= deadline):
                    raise
