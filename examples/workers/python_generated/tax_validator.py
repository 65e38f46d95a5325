# file: workers/python_generated/tax_validator.py
"""The seed's tax-validator loop on a client generated from the API's own ``/openapi.json``.

No engine code: ``oms_client`` is what ``openapi-python-client`` makes of the document
(see ``examples/workers/README.md``), so this is what a team in another Python shop
would write. The HTTP rules it follows are the README's: 204 poll again; 409 the task
is no longer ours (lease lost, finished by someone else): drop it and go on; 503 or no
answer: back off and send the same request again.

    export OMS_API_URL=http://127.0.0.1:8000
    export OMS_TOKEN=$(oms token create --role worker --topics validate_tax_id --name irs-bot)
    PYTHONPATH=examples/workers/python_generated python examples/workers/python_generated/tax_validator.py
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

import httpx
from oms_client import AuthenticatedClient
from oms_client.api.pull_workers import complete_task, fail_task, fetch_task
from oms_client.models import CompleteRequest, FailRequest, FetchRequest
from oms_client.types import Response

API = os.environ.get("OMS_API_URL", "http://127.0.0.1:8000")
TOPIC = os.environ.get("TOPIC", "validate_tax_id")
WORKER_ID = os.environ.get("WORKER_ID", f"tax-validator-py-{os.getpid()}")
#: The longest pause between two tries while the API answers 503 or not at all.
MAX_BACKOFF_S = 30.0

T = TypeVar("T")


def external_irs_api(payload: dict[str, Any]) -> bool:
    """Stand-in for the IRS check: as slow as the payload's ``irs_seconds`` (or ``IRS_LATENCY``); ids ending in X
    do not match."""
    time.sleep(float(payload.get("irs_seconds", os.environ.get("IRS_LATENCY", "0.05"))))
    return not str(payload["form_id"]).endswith("X")


def patiently(call: Callable[[], Response[T]]) -> Response[T]:
    """``call()`` until the API answers with something other than 503, waiting 1 s, 2 s, 4 s … 30 s between tries.

    Sending a completion again is safe: the holder's repeat of a completion that did land is answered as a success.
    """
    pause = 1.0
    while True:
        try:
            response = call()
        except httpx.TransportError as error:  # the API is restarting, or a proxy cut the long poll
            print(f"no answer ({error.__class__.__name__}): again in {pause:g}s", file=sys.stderr, flush=True)
        else:
            if response.status_code != HTTPStatus.SERVICE_UNAVAILABLE:
                return response
            print(f"503 {response.content.decode(errors='replace')}: again in {pause:g}s", file=sys.stderr, flush=True)
        time.sleep(pause)
        pause = min(pause * 2, MAX_BACKOFF_S)


def task_of(response: Response[Any]) -> tuple[str, dict[str, Any]]:
    """The fetched task's id and payload (the typed model's ``to_dict()`` when the document types the task)."""
    task: Any = response.parsed
    data = task.to_dict() if hasattr(task, "to_dict") else task
    return str(data["id"]), dict(data["payload"])


def serve(client: AuthenticatedClient, task_id: str, payload: dict[str, Any]) -> None:
    """Validate the form; complete or fail the task as its holder, and say how that went on stdout."""
    answer: Response[Any]
    if external_irs_api(payload):
        body = CompleteRequest(worker_id=WORKER_ID)
        answer = patiently(lambda: complete_task.sync_detailed(task_id, client=client, body=body))
    else:
        failure = FailRequest(reason="IRS mismatch", worker_id=WORKER_ID)
        answer = patiently(lambda: fail_task.sync_detailed(task_id, client=client, body=failure))
    if answer.status_code == HTTPStatus.CONFLICT:  # lease lost, or finished behind our back: not ours any more
        print(f"409 {task_id} dropped: {answer.content.decode(errors='replace')}", flush=True)
    elif answer.status_code != HTTPStatus.OK:
        print(f"{answer.status_code.value} {task_id} refused: {answer.content.decode(errors='replace')}",
              file=sys.stderr, flush=True)
    else:
        print(f"200 {task_id} {payload['form_id']}", flush=True)


def main() -> None:
    token = os.environ.get("OMS_TOKEN") or sys.exit(f"set OMS_TOKEN to a worker token for {TOPIC}")
    # the long poll waits up to max_wait (10 s): the client waits longer than that for its answer
    client = AuthenticatedClient(base_url=API, token=token, timeout=httpx.Timeout(40.0))
    ask = FetchRequest(max_wait="10s", worker_id=WORKER_ID)
    print(f"ready {WORKER_ID}", flush=True)
    with client:
        while True:
            found = patiently(lambda: fetch_task.sync_detailed(TOPIC, client=client, body=ask))
            if found.status_code == HTTPStatus.NO_CONTENT:
                continue  # no work, loop again
            if found.status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
                sys.exit(f"{found.status_code.value}: {found.content.decode(errors='replace')}")
            if found.status_code != HTTPStatus.OK:
                print(f"fetch refused ({found.status_code.value}): {found.content.decode(errors='replace')}",
                      file=sys.stderr, flush=True)
                time.sleep(1)
                continue
            serve(client, *task_of(found))


if __name__ == "__main__":
    main()
