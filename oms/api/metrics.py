"""``GET /metrics``: the engine's figures in Prometheus' text format (see :mod:`oms.metrics` for how they are read).

A custom collector turns one :class:`~oms.metrics.Snapshot` into metric families
on each scrape; nothing is counted in this process, so every API process (and any
number of them behind a balancer) reports the same numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..ops import metrics

router = APIRouter(tags=["operations"])
#: The text format's media type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_HISTOGRAMS = {"oms_queue_wait_seconds": "Seconds from a step offered to claimed, by workflow and step.",
               "oms_run_seconds": "Seconds from a step claimed to finished, by workflow and step."}


class SnapshotCollector(Collector):
    """Metric families from one snapshot of the database."""

    def __init__(self, snapshot: metrics.Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        found = self.snapshot
        open_steps = GaugeMetricFamily("oms_open_steps", "Steps pending or running, by workflow, step and SLA light.",
                                       labels=["workflow", "step", "light"])
        for (workflow, step, light), count in sorted(found.open_steps.items()):
            open_steps.add_metric([workflow, step, light], count)
        yield open_steps
        instances = GaugeMetricFamily("oms_instances", "Workflow instances pending, running or failed, by workflow "
                                      "and status (finished ones: oms_workflows_finished_total).",
                                      labels=["workflow", "status"])
        for (workflow, status), count in sorted(found.instances.items()):
            instances.add_metric([workflow, status], count)
        yield instances
        yield from self._counters()
        yield from self._histograms()
        for name, moment, text in (
                ("oms_last_sla_scan_timestamp_seconds", found.last_scan, "When the last SLA scan finished."),
                ("oms_last_reconcile_timestamp_seconds", found.last_reconcile, "When the last reconciler pass "
                 "finished.")):
            gauge = GaugeMetricFamily(name, f"{text} Unix time; absent until one has run.")
            if moment is not None:
                gauge.add_metric([], moment.timestamp())
            yield gauge

    def _counters(self) -> Iterator[Metric]:
        rolled = self.snapshot.rolled
        for name, text in metrics.HELP.items():
            labels = {"oms_escalations": ["workflow"], "oms_workflows_finished": ["workflow", "status"],
                      "oms_rungs_fired": ["workflow", "step", "rung"]}.get(name, ["workflow", "step"])
            family = CounterMetricFamily(name, text, labels=labels)
            for (sample, pairs), value in sorted(rolled.items()):
                if sample == f"{name}_total":
                    family.add_metric([dict(pairs)[label] for label in labels], value)
            yield family

    def _histograms(self) -> Iterator[Metric]:
        rolled = self.snapshot.rolled
        for name, text in _HISTOGRAMS.items():
            family = HistogramMetricFamily(name, text, labels=["workflow", "step"])
            buckets: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
            sums: dict[tuple[str, str], float] = {}
            for (sample, pairs), value in rolled.items():
                labels = dict(pairs)
                key = (labels.get("workflow", ""), labels.get("step", ""))
                if sample == f"{name}_bucket":
                    buckets[key][labels["le"]] = value
                elif sample == f"{name}_sum":
                    sums[key] = value
            for key in sorted(buckets.keys() | sums.keys()):
                cumulative, rows = 0.0, []
                for bound in [*(repr(b) for b in metrics.BUCKETS), "+Inf"]:
                    cumulative += buckets[key].get(bound, 0.0)
                    rows.append((bound, cumulative))
                family.add_metric(list(key), rows, sums.get(key, 0.0))
            yield family


def render(snapshot: metrics.Snapshot) -> bytes:
    """The text format of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
def scrape() -> Response:
    """Open steps by light, instances by status, counters and histograms from the event log, upkeep times."""
    return Response(render(metrics.snapshot()), media_type=CONTENT_TYPE)
