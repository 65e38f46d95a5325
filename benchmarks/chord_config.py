"""Celery settings of the fan-out benchmark's worker: the engine's, plus the Redis result backend a chord needs."""

from __future__ import annotations

import os

from celeryconfig import *  # noqa: F403

result_backend = os.environ["OMS_BENCH_RESULT_BACKEND"]
