"""Sending the outbox: claim a due notice under a lease, send it, record the attempt; retry with backoff for a day.

Run by the Celery task ``oms.send_notices`` on the engine's queue ``oms``: beat sends
it every ``OMS_NOTICE_INTERVAL`` seconds, and :func:`oms.notify.kick` after a commit
that wrote notices. Any number of sweeps may run at once: each notice is claimed by
one (:func:`oms.store.outbox.claim`).

The guarantee, precisely: a notice is recorded in the transaction of the escalation
that decided it, so none is lost while a receiver or the SMTP server is down; it is
sent at least once while its target resolves, for ``OMS_NOTICE_RETRY_FOR`` (a day);
and it is sent once, except when a sender dies between sending and recording: then,
once the claim's lease is over, it is sent again with the same ``X-OMS-Notice-Id``
(e-mail: the same ``Message-ID``), for the receiver to deduplicate on.
"""

from __future__ import annotations

import logging
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..durations import format_duration, utcnow
from ..settings import OmsSettings, get_settings
from ..store import outbox
from ..store.channels import Endpoint
from ..store.notices import PENDING
from . import mail, message, webhook
from .errors import SendFailed
from .targets import Nobody, resolve

logger = logging.getLogger(__name__)

#: The longest wait between two attempts.
MAX_BACKOFF = timedelta(hours=1)
#: Notices sent at once by one sweep (each claim takes this many), and at most per sweep.
PARALLEL, PER_SWEEP = 8, 500


@dataclass
class Report:
    """What one sweep did: notices sent, to be tried again, and given up."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0


def backoff(attempt: int, notice_id: str, settings: OmsSettings | None = None) -> timedelta:
    """The wait after failed attempt number ``attempt``: ``OMS_NOTICE_BACKOFF`` doubled each time, at most an hour,
    plus up to a tenth more drawn from the notice's id (notices that failed together do not retry together)."""
    base = (settings or get_settings()).notice_backoff
    wait = min(base * 2 ** min(attempt - 1, 30), MAX_BACKOFF.total_seconds())
    spread = (zlib.crc32(notice_id.encode()) % 1000) / 10_000
    return timedelta(seconds=wait * (1 + spread))


def retry_at(notice: outbox.Claimed, now: datetime, settings: OmsSettings | None = None) -> datetime | None:
    """When to try ``notice`` again after a failure at ``now``; ``None`` once ``OMS_NOTICE_RETRY_FOR`` is over
    (the last attempt is made when it ends)."""
    settings = settings or get_settings()
    give_up_at = notice.created_at + timedelta(seconds=settings.notice_retry_for)
    if now >= give_up_at:
        return None
    return min(now + backoff(notice.attempt, notice.id, settings), give_up_at)


def send(notice: outbox.Claimed, now: datetime, timeout: float) -> str:
    """Send ``notice`` to whom its target resolves to; return the receiver's answer or raise :class:`SendFailed`."""
    found = resolve(notice.target)
    if isinstance(found, Nobody):
        raise SendFailed(found.reason, permanent=True)
    if isinstance(found, Endpoint):
        return webhook.post(found, notice.id, message.body(notice), timeout)
    return mail.send(message.facts(notice), found.addresses, now, timeout)


def deliver_one(notice: outbox.Claimed, now: datetime | None = None) -> str:
    """Send a claimed notice and record the attempt; return its status after it (``sent``, ``pending``,
    ``failed``)."""
    settings = get_settings()
    at = now or utcnow()
    try:
        detail = send(notice, at, settings.notice_timeout)
    except SendFailed as exc:
        failure = exc
    except Exception as exc:  # a fault of the engine's, not the receiver's: recorded, retried like one
        logger.error("sending notice %s failed unexpectedly (%s)", notice.id, type(exc).__name__)
        failure = SendFailed(f"unexpected {type(exc).__name__} in the sender (see the worker's log)")
    else:
        outbox.record(notice, at, True, detail)
        return outbox.SENT
    later = None if failure.permanent else retry_at(notice, at, settings)
    detail = failure.detail
    if later is None and not failure.permanent:
        detail = (f"gave up after {notice.attempt} attempt(s) over "
                  f"{format_duration(timedelta(seconds=round(settings.notice_retry_for)))}: {detail}")
    outbox.record(notice, at, False, detail, later)
    if later is None:
        logger.warning("notice %s to %s failed: %s", notice.id, notice.target, detail)
        return outbox.FAILED
    return PENDING


def deliver(now: datetime | None = None, *, limit: int = PER_SWEEP) -> Report:
    """Send the notices due at ``now`` (default: the clock, read at each claim), up to ``limit``, a few at once."""
    settings = get_settings()
    lease = timedelta(seconds=settings.notice_lease)
    report = Report()
    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="oms-notice") as pool:
        while limit > 0:
            claimed = outbox.claim(now or utcnow(), lease, min(PARALLEL, limit))
            if not claimed:
                break
            limit -= len(claimed)
            for status in pool.map(lambda notice: deliver_one(notice, now), claimed):
                if status == outbox.SENT:
                    report.sent += 1
                elif status == outbox.FAILED:
                    report.failed += 1
                else:
                    report.retrying += 1
    return report
