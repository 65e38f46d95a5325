"""Notices that arrive: the outbox (``oms_notices``) sent to webhooks and e-mail addresses by the engine's workers.

An escalation writes its notices with :func:`oms.store.notices.add` in its own
transaction and calls :func:`kick` after the commit; the Celery task
``oms.send_notices`` (on the ``oms`` queue, also sent by beat every
``OMS_NOTICE_INTERVAL``) sends them with :func:`deliver`. Channels are defined with
:mod:`oms.store.channels` (``oms channel create``).
"""

from __future__ import annotations

from .delivery import Report, deliver
from .task import TASK, kick

__all__ = ["TASK", "Report", "deliver", "kick"]
