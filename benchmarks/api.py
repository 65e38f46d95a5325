"""The HTTP API against the Python API it wraps, on PostgreSQL + Redis, in one run (issue 11).

* **pull round trips**: P client processes loop fetch + complete until N queued
  one-step workflows are done, over HTTP (keep-alive ``http.client`` connections, one ``oms api``
  process unless ``--api-workers``; the API's CPU per round trip) and in-process (``fetch_task`` + ``complete_task``); target ≥ 0.7×; and over HTTP in
  batches (``--max-tasks B``, 10 by default; 0 leaves it out): ``fetch-batch`` with ``max_tasks=B``
  + one ``POST /v1/batches/complete`` for what came, against the same in-process one-at-a-time loop,
  target ≥ 1.0×;
* **idle long polls**: K concurrent ``fetch`` calls wait on one API process; its CPU
  and RSS while they wait, then the wake-up latency of one of them when a step is
  offered (from the start's return to the task's arrival), p50/p99; target p50 ≤ 20 ms;
* **starts per second**: ``POST /v1/workflows/{id}/instances`` against
  ``start_workflow``, P processes each;
* **metrics scrape**: ``GET /metrics`` on a task table of R rows (target ≤ 50 ms),
  after the event log has been rolled up (a scrape rolls up only what is new); and
  the page's board (open steps by light, breaches of the last 24 h, 2% of the rows).

    .venv/bin/python benchmarks/api.py                       # full size: run it alone on the machine
    .venv/bin/python benchmarks/api.py --steps 200 --polls 50 --starts 200 --rows 20000 --samples 20   # smoke
    .venv/bin/python benchmarks/api.py --max-tasks 10 …      # the HTTP batch loop's size (0: leave it out)
    .venv/bin/python benchmarks/api.py --api-workers 2 …     # oms api --workers 2: two API processes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.cpu import postgres_cpu  # noqa: E402
from benchmarks.gate import StartGate  # noqa: E402
from benchmarks.scratch import create_database, drop_database  # noqa: E402


def _configure(database_url: str, broker_url: str) -> None:
    import oms

    oms.configure(database_url=database_url, broker_url=broker_url)


# -- processes -------------------------------------------------------------------


class _Client:
    """A keep-alive HTTP/1.1 connection with the standard library's client: light on CPU, as a worker in C,
    Go or curl would be (the benchmark measures the API, not a Python HTTP client)."""

    def __init__(self, url: str, token: str) -> None:
        import http.client

        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.connection.request("POST", path, json.dumps(body), self.headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None


def _http_puller(url: str, token: str, topic: str, start: StartGate, out: Any) -> None:
    client = _Client(url, token)
    worker = f"bench-{os.getpid()}"
    client.post("/v1/topics/warmup_topic/fetch", {"max_wait": 0})
    start.wait()
    done, last = 0, time.monotonic()
    while True:
        status, task = client.post(f"/v1/topics/{topic}/fetch", {"max_wait": "0.5s", "worker_id": worker})
        if status == 204:
            break
        status, _ = client.post(f"/v1/tasks/{task['id']}/complete", {"worker_id": worker})
        assert status == 200, status
        done, last = done + 1, time.monotonic()
    out.put((done, last))


def _http_batch_puller(url: str, token: str, topic: str, batch: int, start: StartGate, out: Any) -> None:
    client = _Client(url, token)
    worker = f"bench-{os.getpid()}"
    client.post("/v1/topics/warmup_topic/fetch-batch", {"max_wait": 0, "max_tasks": batch})
    start.wait()
    done, last = 0, time.monotonic()
    while True:
        status, found = client.post(f"/v1/topics/{topic}/fetch-batch", {"max_wait": "0.5s", "worker_id": worker,
                                                                          "max_tasks": batch})
        if status == 204:
            break
        tasks = [{"task_id": task["id"]} for task in found["tasks"]]
        status, answer = client.post("/v1/batches/complete", {"worker_id": worker, "tasks": tasks})
        assert status == 200 and {r["status"] for r in answer["results"]} == {"done"}, (status, answer)
        done, last = done + len(tasks), time.monotonic()
    out.put((done, last))


def _python_puller(database_url: str, broker_url: str, topic: str, start: StartGate, out: Any) -> None:
    _configure(database_url, broker_url)
    from act import complete_task, fetch_task

    fetch_task("warmup_topic", max_wait=0)
    start.wait()
    done, last = 0, time.monotonic()
    while (task := fetch_task(topic, max_wait="0.5s")) is not None:
        complete_task(task.id)
        done, last = done + 1, time.monotonic()
    out.put((done, last))


def _http_starter(url: str, token: str, workflow: str, count: int, start: StartGate, out: Any) -> None:
    client = _Client(url, token)
    client.post(f"/v1/workflows/{workflow}/instances", {"payload": {"warmup": True}})
    start.wait()
    for i in range(count):
        status, _ = client.post(f"/v1/workflows/{workflow}/instances", {"payload": {"i": i}})
        assert status == 201, status
    out.put((count, time.monotonic()))


def _python_starter(database_url: str, broker_url: str, workflow: str, count: int, start: StartGate, out: Any) -> None:
    _configure(database_url, broker_url)
    from oms import start_workflow

    start_workflow(workflow, {"warmup": True})
    start.wait()
    for i in range(count):
        start_workflow(workflow, {"i": i})
    out.put((count, time.monotonic()))


def _run(target: Any, args: tuple[Any, ...], processes: int) -> tuple[float, int]:
    """``(seconds from the start signal to the last operation of any process, operations)``."""
    ctx = mp.get_context("spawn")
    start, out = StartGate(ctx, processes), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, start, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    start.open()  # every process imported and connected
    began = time.monotonic()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    return max(r[1] for r in results) - began, sum(r[0] for r in results)


# -- the API process ---------------------------------------------------------------


class Api:
    """``oms api`` in a subprocess, with an admin token."""

    def __init__(self, database_url: str, broker_url: str, port: int, workers: int = 1) -> None:
        from oms.store import tokens

        self.token, _ = tokens.create("admin", name=f"bench-{os.getpid()}-{port}")
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "OMS_DATABASE_URL": database_url, "OMS_BROKER_URL": broker_url, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([sys.executable, "-m", "oms.cli", "api", "--port", str(port),
                                         "--no-access-log", "--workers", str(workers)], env=env, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import httpx2 as httpx

        for _ in range(300):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise SystemExit(f"oms api did not start: {self.process.stderr.read().decode() if self.process.stderr else ''}")

    def pids(self) -> list[int]:
        """The process, and its worker processes under ``--workers``."""
        pid = self.process.pid
        return [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def _status(self, field: str) -> list[int]:
        return [int(Path(f"/proc/{pid}/status").read_text().split(f"{field}:")[1].split()[0]) for pid in self.pids()]

    def rss_mib(self) -> float:
        return sum(self._status("VmRSS")) / 1024

    def threads(self) -> int:
        return sum(self._status("Threads"))

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


# -- the measurements --------------------------------------------------------------


def pull_round_trips(database_url: str, broker_url: str, api: Api, steps: int, processes: int, batch: int) -> None:
    from oms import Workflow, start_workflows

    topics = ("bench_pull_http", "bench_pull_py", *(("bench_pull_batch",) if batch else ()))
    for topic in topics:
        Workflow(id=topic, steps=[{"id": topic, "sla": "1h"}]).save()
        start_workflows(topic, [{"n": i} for i in range(steps)])
    cpu, server = api.cpu_seconds(), postgres_cpu()
    http_s, http_n = _run(_http_puller, (api.url, api.token, "bench_pull_http"), processes)
    cpu, between = api.cpu_seconds() - cpu, postgres_cpu()
    py_s, py_n = _run(_python_puller, (database_url, broker_url, "bench_pull_py"), processes)
    server, py_server = between - server, postgres_cpu() - between
    assert http_n == steps and py_n == steps, (http_n, py_n, steps)
    http, python = http_n / http_s, py_n / py_s
    print(f"pull round trips, {processes} processes, {steps} steps each way: HTTP {http:.0f}/s, in-process "
          f"{python:.0f}/s, ratio {http / python:.2f} (target >= 0.7); the API's CPU {cpu * 1000 / http_n:.2f} ms per "
          f"round trip; PostgreSQL's {server * 1000 / http_n:.2f} ms over HTTP, {py_server * 1000 / py_n:.2f} ms "
          "in-process", flush=True)
    if batch:
        batch_s, batch_n = _run(_http_batch_puller, (api.url, api.token, "bench_pull_batch", batch), processes)
        assert batch_n == steps, (batch_n, steps)
        print(f"pull over HTTP in batches of {batch} (fetch-batch + POST /v1/batches/complete), {processes} processes:"
              f" {batch_n / batch_s:.0f}/s, {batch_n / batch_s / python:.2f} x in-process one at a time"
              " (target >= 1.0)", flush=True)


async def _idle_polls(api: Api, polls: int, samples: int, workflow: str) -> tuple[list[float], float, float, int]:
    """Open ``polls`` waiting fetches; measure CPU and RSS while idle, then wake-up latencies."""
    from oms import start_workflow

    body = json.dumps({"max_wait": "60s"}).encode()
    request = (f"POST /v1/topics/{workflow}/fetch HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {api.token}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    port = int(api.url.rsplit(":", 1)[1])
    arrivals: asyncio.Queue[float] = asyncio.Queue()

    async def poll_forever() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split()[1])
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if length:
                await reader.readexactly(length)
            if status == 200:
                await arrivals.put(time.perf_counter())

    tasks = [asyncio.create_task(poll_forever()) for _ in range(polls)]
    await asyncio.sleep(5)  # all connected and waiting
    cpu, began = api.cpu_seconds(), time.monotonic()
    await asyncio.sleep(10)
    idle_cpu = (api.cpu_seconds() - cpu) / (time.monotonic() - began)
    rss, threads = api.rss_mib(), api.threads()
    latencies = []
    loop = asyncio.get_running_loop()
    for i in range(samples):
        await asyncio.sleep(0.05)
        offered = await loop.run_in_executor(None, lambda i=i: (start_workflow(workflow, {"i": i}),
                                                                 time.perf_counter())[1])
        arrived = await asyncio.wait_for(arrivals.get(), 10)
        latencies.append((arrived - offered) * 1000)
    for task in tasks:
        task.cancel()
    return latencies, idle_cpu, rss, threads


def idle_polls(api: Api, polls: int, samples: int) -> None:
    from oms import Workflow

    Workflow(id="bench_wake", steps=[{"id": "bench_wake", "sla": "1h"}]).save()
    latencies, cpu, rss, threads = asyncio.run(_idle_polls(api, polls, samples, "bench_wake"))
    q = statistics.quantiles(latencies, n=100)
    print(f"{polls} idle long polls on one API process: CPU {cpu * 100:.1f}% of a core, RSS {rss:.0f} MiB, "
          f"{threads} threads; wake-up after the start returned: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms "
          f"(target p50 <= 20 ms), {len(latencies)} samples", flush=True)


def starts(database_url: str, broker_url: str, api: Api, count: int, processes: int) -> None:
    from oms import Workflow

    Workflow(id="bench_start", steps=[{"id": "bench_start_a", "sla": "1h"}, {"id": "bench_start_b", "sla": "1h"}]
             ).save()
    per = max(count // processes, 1)
    http_s, http_n = _run(_http_starter, (api.url, api.token, "bench_start", per), processes)
    py_s, py_n = _run(_python_starter, (database_url, broker_url, "bench_start", per), processes)
    http, python = http_n / http_s, py_n / py_s
    print(f"starts, {processes} processes, {http_n} each way: HTTP {http:.0f}/s, in-process {python:.0f}/s, "
          f"ratio {http / python:.2f}", flush=True)


def _fill(rows: int) -> None:
    """``rows`` finished tasks (4 per instance, one workflow of 4 steps) with their events, as a year of work
    leaves them; the event log then counted as rolled up (a scrape reads only what came after)."""
    from sqlalchemy import text

    from oms.ops.metrics import WATERMARK
    from oms.store.db import transaction

    instances = rows // 4
    with transaction() as s:
        s.execute(text(
            "INSERT INTO oms_instances (id, workflow_id, version, status, current_step, payload, results, created_at,"
            " updated_at, finished_at, light, steps_left, waiting) SELECT 'wf-' || md5(g::text), 'bench_metrics', 1,"
            " 'done', 3, '{}', '{}', now() - interval '1 day', now(), now(), 'green', 0, '{}'"
            " FROM generate_series(1, :n) g"), {"n": instances})
        s.execute(text(
            "INSERT INTO oms_tasks (id, instance_id, workflow_id, step_id, step_index, topic, attempt, failures, lost,"
            " status, payload, created_at, ready_at, warn_at, expires_at, light, started_at, finished_at)"
            " SELECT 'tk-' || md5(g::text || '-' || k), 'wf-' || md5(g::text), 'bench_metrics', 'step' || k, k,"
            " 'step' || k, 1, 0, 0, 'done', '{}', now() - interval '1 day', now() - interval '1 day',"
            " now() - interval '1 day', now() - interval '1 hour', CASE WHEN g % 50 = 0 THEN 'red' ELSE 'green' END,"
            " now() - interval '1 day' + interval '2 seconds',"
            " now() - interval '1 day' + interval '9 seconds'"
            " FROM generate_series(1, :n) g, generate_series(0, 3) k"), {"n": instances})
        s.execute(text(
            "INSERT INTO oms_events (instance_id, task_id, kind, step_id, attempt, at, data)"
            " SELECT 'wf-' || md5(g::text), 'tk-' || md5(g::text || '-' || k), 'task.done', 'step' || k, 1,"
            " now() - interval '1 day', '{}' FROM generate_series(1, :n) g, generate_series(0, 3) k"),
            {"n": instances})
        s.execute(text("INSERT INTO oms_metrics (metric, labels, value) SELECT :w, '{}', max(id) FROM oms_events"
                       " ON CONFLICT (metric, labels) DO UPDATE SET value = excluded.value"), {"w": WATERMARK})
    with transaction() as s:
        s.execute(text("ANALYZE"))


def scrape(api: Api, rows: int, samples: int) -> None:
    import httpx2 as httpx

    from oms.ops import metrics

    _fill(rows)
    metrics.snapshot()  # warm
    timings = []
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.token}"}, timeout=60) as client:
        client.get("/metrics").raise_for_status()
        for _ in range(samples):
            began = time.perf_counter()
            client.get("/metrics").raise_for_status()
            timings.append((time.perf_counter() - began) * 1000)
    inside = []
    for _ in range(samples):
        began = time.perf_counter()
        metrics.snapshot()
        inside.append((time.perf_counter() - began) * 1000)
    print(f"/metrics on {rows} task rows ({rows // 4} instances, {rows} events rolled up): GET p50 "
          f"{statistics.median(timings):.1f} ms, max {max(timings):.1f} ms; the snapshot's queries alone p50 "
          f"{statistics.median(inside):.1f} ms (target <= 50 ms)", flush=True)
    from oms import Workflow
    from oms.ops.board import board

    Workflow(id="bench_metrics", steps=[{"id": f"step{k}", "sla": "1h"} for k in range(4)]).save()
    boards = []
    for _ in range(samples):
        began = time.perf_counter()
        found = board()
        boards.append((time.perf_counter() - began) * 1000)
    breaches = sum(step.breaches_24h for workflow in found for step in workflow.steps)
    print(f"the page's board on the same table ({breaches} breaches in the last 24 h): p50 "
          f"{statistics.median(boards):.1f} ms, max {max(boards):.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="queued pull steps per side")
    parser.add_argument("--processes", type=int, default=8, help="client processes for pulls and starts")
    parser.add_argument("--polls", type=int, default=500, help="concurrent idle long polls")
    parser.add_argument("--samples", type=int, default=200, help="wake-up samples, and scrapes timed")
    parser.add_argument("--starts", type=int, default=4000, help="starts per side")
    parser.add_argument("--rows", type=int, default=1_000_000, help="task rows for the metrics scrape")
    parser.add_argument("--max-tasks", type=int, default=10, help="steps per batch for the HTTP batch loop (0: leave "
                        "it out)")
    parser.add_argument("--port", type=int, default=8100, help="the API process's port (8100-8199 on a shared host)")
    parser.add_argument("--api-workers", type=int, default=1, help="oms api --workers: its processes")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()

    import redis

    database_url = create_database(prefix="oms_bench_api")
    redis.Redis.from_url(args.broker_url).flushdb()
    api = None
    try:
        _configure(database_url, args.broker_url)
        api = Api(database_url, args.broker_url, args.port, args.api_workers)
        print(f"PostgreSQL, broker {args.broker_url}; {os.cpu_count()} cores; oms api --workers {args.api_workers}",
              flush=True)
        pull_round_trips(database_url, args.broker_url, api, args.steps, args.processes, args.max_tasks)
        idle_polls(api, args.polls, args.samples)
        starts(database_url, args.broker_url, api, args.starts, args.processes)
        scrape(api, args.rows, min(args.samples, 50))
    finally:
        if api is not None:
            api.stop()
        from oms.store.db import dispose_all

        dispose_all()
        drop_database(database_url)
        redis.Redis.from_url(args.broker_url).flushdb()


if __name__ == "__main__":
    main()
