"""``/healthz`` (the process answers) and ``/readyz`` (it can do its work): for probes, with no token.

Ready means: the database is reachable with its schema at this code's revision,
the broker is reachable, and an SLA scan ran within three scan intervals (without
one, lights and lapsed claims go stale). Otherwise 503, naming what is wrong.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..ops import doctor
from ..store.runs import missing_scan
from .answers import Health, Ready
from .errors import body, documented

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> Health:
    """The process is alive and answering."""
    return Health(status="ok")


def _checks() -> list[doctor.Check]:
    checks = [doctor.database_check(), doctor.broker_check()]
    if checks[0].status == doctor.FAIL:
        return checks
    warning = missing_scan(datetime.now(UTC))
    checks.append(doctor.Check("SLA scan", doctor.FAIL if warning else doctor.OK, warning or "ran lately"))
    return checks


@router.get("/readyz", response_model=Ready, responses=documented(503))
async def readyz() -> JSONResponse:
    """200 when the database, its schema, the broker and the SLA scan are all right; else 503 with the reason."""
    checks = await run_in_threadpool(_checks)
    failed = [c for c in checks if c.status == doctor.FAIL]
    if failed:
        return body(503, "NotReady", "; ".join(f"{c.name}: {c.detail}" for c in failed))
    return JSONResponse({"status": "ready", "checks": [c.as_dict() for c in checks]})
