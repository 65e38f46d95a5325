"""Celery settings for the oms app, built from ``OMS_*`` environment variables.

``OMS_BROKER_URL`` (default: kombu's filesystem transport under ``.oms/broker``,
no server needed) and ``OMS_DATABASE_URL`` (default: ``sqlite:///oms.db``) are the
two settings most deployments change. Anything here can be overridden the usual
Celery way, with your own module named by ``CELERY_CONFIG_MODULE``.
"""

from __future__ import annotations

from oms.celery.config import beat_schedule as beat_schedule_of
from oms.celery.config import broker_settings
from oms.settings import ENGINE_QUEUE, get_settings

_settings = get_settings()
_broker = broker_settings(_settings)
broker_url = _broker["broker_url"]
broker_transport = _broker["broker_transport"]
broker_transport_options = _broker["broker_transport_options"]
broker_connection_retry_on_startup = True

# JSON only on the wire: a pickled message is refused by every worker.
task_serializer = "json"
result_serializer = "json"
event_serializer = "json"
accept_content = ["json"]

# At-least-once delivery; the engine's transitions make the second delivery a no-op.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# Results live in the engine's database, not in a Celery result backend.
task_ignore_result = True
result_backend = None

task_default_queue = ENGINE_QUEUE
task_create_missing_queues = True
# A broker blip must not kill running handlers: each records its outcome in the
# database itself, and the message delivered again finds its step claimed or done
# and is dropped (README, "A broker blip"). True would terminate every handler in
# flight, and the steps would run again once their leases lapse.
worker_cancel_long_running_tasks_on_connection_loss = False

# The engine's upkeep: `celery -A oms beat` sends it, a worker on the `oms` queue runs it.
beat_schedule = beat_schedule_of(_settings)
