"""The shop's Django settings; the tests set where its broker, results and engine database are."""

import os

SECRET_KEY = "the-test-shop-is-not-deployed"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True

INSTALLED_APPS = [
    "demoapp",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DJANGO_DB", ":memory:"),
    }
}

# Celery: every setting prefixed CELERY_ (proj/celery.py reads them with namespace="CELERY")
CELERY_BROKER_URL = os.environ.get("SHOP_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
CELERY_RESULT_BACKEND = os.environ.get("SHOP_RESULT_BACKEND", "redis://127.0.0.1:6379/8")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# the inspectors' queue: no worker of the tests serves it, so an inspection waits, turns red, is escalated
CELERY_TASK_ROUTES = {"demoapp.tasks.inspect_site": {"queue": "inspections"}}
if "SHOP_VISIBILITY_TIMEOUT" in os.environ:
    # Redis: seconds before an unacknowledged message is delivered again, swept for every second
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ["SHOP_VISIBILITY_TIMEOUT"]),
                                       "unacked_restore_interval": 1, "unacked_restore_throttle": 1}

# The engine (oms.attach): its database; an OMS_* environment variable would win over these
CELERY_OMS_DATABASE_URL = os.environ.get("SHOP_DATABASE_URL", "sqlite:///oms.db")
if "SHOP_SLA_SCAN_INTERVAL" in os.environ:
    CELERY_OMS_SLA_SCAN_INTERVAL = float(os.environ["SHOP_SLA_SCAN_INTERVAL"])
