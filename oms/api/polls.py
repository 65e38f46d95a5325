"""Long polls without a thread or a connection each: one listener per topic wakes the HTTP callers waiting on it.

A pull worker in Python (:func:`act.fetch_task`) blocks on its topic's broker queue
until a message offers a step, then claims the step in the database. Over HTTP,
500 callers waiting that way would hold 500 threads and broker connections. Here
each waiting caller is an asyncio future; one thread per topic with callers waits
on the topic's queue, as ``fetch_task`` does, and each message it takes wakes the
longest-waiting caller, which then makes one short claim attempt (in the thread
pool, with a pooled database connection). A message that arrives when nobody is
waiting any more is given back to the queue for the push workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque

from kombu.simple import SimpleQueue

from ..celery.app import app

logger = logging.getLogger(__name__)

#: Seconds a listener blocks on its queue before looking at its callers again.
_GET_TIMEOUT = 0.5
#: Seconds a listener waits before trying a broker again after an error.
_RETRY_AFTER = 1.0


class _Topic:
    """The callers waiting on one topic, and the thread that wakes them."""

    def __init__(self, hub: PollHub, topic: str) -> None:
        self.hub, self.topic = hub, topic
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.wanted = threading.Event()
        self.thread = threading.Thread(target=self._listen, name=f"oms-poll-{topic}", daemon=True)
        self.thread.start()

    def wake_one(self) -> bool:
        """Wake the longest-waiting caller still there (on the event loop); ``False`` if none is."""
        while self.waiters:
            future = self.waiters.popleft()
            if not future.done():
                future.set_result(None)
                return True
        return False

    def _listen(self) -> None:
        """Take the topic's messages while callers wait; each one wakes a caller, or goes back to the queue."""
        queue: SimpleQueue | None = None
        while not self.hub.closed:
            if not self.waiters:
                _close(queue)
                queue = None
                self.wanted.clear()
                if not self.waiters:
                    self.wanted.wait(1.0)
                continue
            try:
                if queue is None:
                    connection = app.connection_for_read(transport_options={"polling_interval": 0.02})
                    queue = SimpleQueue(connection, app.amqp.queues[self.topic], no_ack=False)  # type: ignore[no-untyped-call]
                    queue.consumer.qos(prefetch_count=1)
                try:
                    message = queue.get(block=True, timeout=_GET_TIMEOUT)  # type: ignore[no-untyped-call]
                except queue.Empty:
                    continue
                future = asyncio.run_coroutine_threadsafe(self._offer(), self.hub.loop)
                if future.result(timeout=10):
                    message.ack()
                else:
                    message.requeue()
            except Exception as exc:  # a broker restart: log, reconnect, go on
                logger.warning("long polls on topic %s: broker error (%s: %s); reconnecting", self.topic,
                               type(exc).__name__, exc)
                _close(queue)
                queue = None
                time.sleep(_RETRY_AFTER)
        _close(queue)

    async def _offer(self) -> bool:
        return self.wake_one()


def _close(queue: SimpleQueue | None) -> None:
    if queue is not None:
        with contextlib.suppress(Exception):  # the broker may be gone; the consumer is dropped anyway
            queue.close()  # type: ignore[no-untyped-call]
            queue.channel.connection.client.release()


class PollHub:
    """Every long poll of one API process: ``await hub.wait(topic, timeout, gone)``."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.topics: dict[str, _Topic] = {}
        self.closed = False

    async def wait(self, topic: str, timeout: float, gone: asyncio.Event) -> bool:
        """Wait until a step may have been offered on ``topic`` (``True``), ``timeout`` passes or the caller has
        ``gone`` (``False``). Costs a future, not a thread."""
        if timeout <= 0 or gone.is_set():
            return False
        waiting = self.topics.get(topic)
        if waiting is None:
            waiting = self.topics[topic] = _Topic(self, topic)
        future: asyncio.Future[None] = self.loop.create_future()
        waiting.waiters.append(future)
        waiting.wanted.set()
        left = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait((future, left), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            return future.done() and not future.cancelled()
        finally:
            left.cancel()
            if not future.done():
                future.cancel()
                with contextlib.suppress(ValueError):
                    waiting.waiters.remove(future)

    def pass_on(self, topic: str) -> None:
        """A woken caller left before claiming: wake the next one instead, so the offer is not lost."""
        waiting = self.topics.get(topic)
        if waiting is not None:
            waiting.wake_one()

    def close(self) -> None:
        self.closed = True
        for waiting in self.topics.values():
            waiting.wanted.set()
