"""The oms app's settings plus a Redis result backend of its own (db 8): for the tracked-canvas tests."""

from celeryconfig import *  # noqa: F403

RESULT_BACKEND = "redis://127.0.0.1:6379/8"
result_backend = RESULT_BACKEND
task_ignore_result = False
