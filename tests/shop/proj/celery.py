"""The shop's Celery app, as in Celery's examples/django, plus the two lines that run the engine on it.

``SHOP_ATTACH=0`` leaves the engine out: the tests run the shop both ways and
compare its own tasks.
"""

import os

from celery import Celery

import oms

# set the default Django settings module for the 'celery' program.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")

# all Celery settings in Django's settings, prefixed CELERY_ (the engine's too: CELERY_OMS_DATABASE_URL)
app.config_from_object("django.conf:settings", namespace="CELERY")

# tasks.py of every installed Django app
app.autodiscover_tasks()

if os.environ.get("SHOP_ATTACH", "1") != "0":
    oms.attach(app)
