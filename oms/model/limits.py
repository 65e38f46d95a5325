"""How long a step may hold its message: Celery's time limits, and whether the broker allows them."""

from __future__ import annotations

from datetime import timedelta

from ..exceptions import ConfigurationError
from ..settings import OmsSettings, get_settings
from ..states import StepKind
from .definitions import Definition, Step

#: URL schemes of kombu's Redis transport, the one with a visibility timeout.
REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://")


def time_limits(sla: timedelta, settings: OmsSettings | None = None) -> tuple[float, float]:
    """``(soft_time_limit, time_limit)`` for a step: the SLA, and a little above it."""
    soft = sla.total_seconds()
    margin = (settings or get_settings()).hard_limit_margin
    return soft, soft + max(margin, soft * 0.1)


def wall_sla(step: Step) -> timedelta | None:
    """A step's SLA in wall time (a step outside a calendar counts no business days); ``None``: it has none."""
    if step.sla is None:
        return None
    assert isinstance(step.sla, timedelta), "business days need a calendar"
    return step.sla


def check_fits_broker(workflow: Definition, settings: OmsSettings | None = None) -> None:
    """Refuse a workflow whose steps could outlive the Redis visibility timeout.

    A message held past that timeout is delivered again while the first delivery
    still runs; the engine would refuse the second claim, but the broker would keep
    redelivering. Better to say what to set.
    """
    settings = settings or get_settings()
    if not settings.broker_url.startswith(REDIS_SCHEMES):
        return
    for index, step in enumerate(workflow.steps):
        if workflow.calendar_of(index) or workflow.tracked or (sla := wall_sla(step)) is None:
            continue  # no Celery time limit under a calendar (see compiler.step_signature), nor on Celery's tasks
        if step.kind is not StepKind.WORKER:
            continue  # a person, a signal or the clock ends it: no message is published for it
        _, hard = time_limits(sla * step.chunk, settings)  # a chunk's message holds its items, one after another
        longest = hard + step.retry_delay(step.retries).total_seconds()
        if longest > settings.visibility_timeout:
            raise ConfigurationError(
                f"step {step.id!r} of workflow {workflow.id!r} may hold its message for {longest:.0f}s, longer "
                f"than the Redis visibility timeout ({settings.visibility_timeout}s): set OMS_VISIBILITY_TIMEOUT "
                f"(with oms.attach: the app's broker_transport_options['visibility_timeout']) to at least "
                f"{int(longest) + 60}"
            )
