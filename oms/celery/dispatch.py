"""Publishing steps once their rows are committed: what a transition asks the broker for.

A transition never publishes inside its transaction. It returns a :class:`Dispatch`
and the caller publishes it after the commit, so a crash in between leaves a
queued row that the reconciler publishes again, never a message about a row that
does not exist.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

from celery.canvas import _chain
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.messaging import Producer
from kombu.utils.url import maybe_sanitize_url

from ..exceptions import BrokerUnavailable
from ..model.definitions import Definition
from ..store.catalog import definition
from .app import current
from .compiler import compile_chain

logger = logging.getLogger(__name__)


def _batched(producer: Producer) -> AbstractContextManager[object]:
    """``producer.batch()`` where kombu has it (5.7+), else nothing: each message goes out at once."""
    batch = getattr(producer, "batch", None)
    return batch() if batch is not None else nullcontext()


@dataclass(frozen=True)
class Dispatch:
    """Publish the chain of ``instance_id`` from step ``from_step`` (or items ``item_index`` to ``item_index + items
    - 1`` of a mapped step, in one message; or the sibling ``branches``, ``from_step`` first, in one message), after
    ``countdown`` seconds."""

    instance_id: str
    workflow_id: str
    version: int
    from_step: int
    countdown: float = 0.0
    item_index: int | None = None
    items: int = 1
    branches: tuple[int, ...] = ()


def chunked(dispatches: list[Dispatch]) -> list[Dispatch]:
    """``dispatches`` with what a step's ``chunk`` lets share a message joined, up to that many to a message: the
    consecutive items of a mapped step, and sibling branches on one topic offered together, each a step of its own
    that no Celery chain follows. The one place ``chunk`` is read (a start, a completion, a retry, the reconciler
    all publish through :func:`publish_all`)."""
    found: list[Dispatch] = []
    for dispatch in dispatches:
        last = found[-1] if found else None
        if last is not None and _extends(last, dispatch):
            found[-1] = replace(last, items=last.items + 1)
        elif last is not None and _joins(last, dispatch):
            found[-1] = replace(last, branches=(*(last.branches or (last.from_step,)), dispatch.from_step))
        else:
            found.append(dispatch)
    return found


def _extends(chunk: Dispatch, item: Dispatch) -> bool:
    """Whether ``item`` is the next item of ``chunk``'s step and instance, offered with it, and the chunk has room."""
    return (chunk.item_index is not None and item.item_index == chunk.item_index + chunk.items and item.items == 1
            and (item.instance_id, item.version, item.from_step, item.countdown)
            == (chunk.instance_id, chunk.version, chunk.from_step, chunk.countdown)
            and chunk.items < definition(chunk.workflow_id, chunk.version).steps[chunk.from_step].chunk)


def _joins(chunk: Dispatch, branch: Dispatch) -> bool:
    """Whether step ``branch`` may share ``chunk``'s message: a step of the same instance offered with it, both on one
    topic (one Celery task, one queue), neither a map's item, and every step of the message allowing one more
    (:meth:`~oms.model.definitions.Definition.branch_chunk`; so the message's time, their SLAs together, stays within
    what each step's ``chunk`` allows: :func:`oms.model.limits.check_fits_broker`)."""
    if (chunk.item_index is not None or branch.item_index is not None or branch.branches
            or (branch.instance_id, branch.version, branch.countdown)
            != (chunk.instance_id, chunk.version, chunk.countdown)):
        return False
    workflow = definition(chunk.workflow_id, chunk.version)
    members = chunk.branches or (chunk.from_step,)
    first, step = workflow.steps[chunk.from_step], workflow.steps[branch.from_step]
    return (branch.from_step not in members and (step.topic, step.task) == (first.topic, first.task)
            and all(workflow.branch_chunk(i) > len(members) for i in (branch.from_step, *members)))


def engine_publishes(workflow: Definition, index: int | None = None) -> bool:
    """Whether the engine publishes this workflow's steps (step ``index``'s, when given), and the reconciler
    re-publishes them: not a tracked workflow's (:func:`oms.track`), whose tasks Celery publishes itself, nor a
    step a person, a signal or a timer ends, which no worker runs. The one home of that rule."""
    return not workflow.tracked and (index is None or workflow.graph.worker(index))


def publish(dispatch: Dispatch | None, producer: Producer | None = None) -> None:
    """Publish the chain a committed transition asked for (nothing for ``None``).

    Raises:
        BrokerUnavailable: the broker refused the message; the row stays queued and
            the reconciler will publish it.
    """
    if dispatch is None:
        return
    app = current()
    workflow = definition(dispatch.workflow_id, dispatch.version)
    if not engine_publishes(workflow, dispatch.from_step):
        return
    compiled = compile_chain(app, workflow, dispatch.instance_id, dispatch.from_step, item_index=dispatch.item_index,
                             items=dispatch.items, branches=dispatch.branches)
    first, *rest = compiled.tasks if isinstance(compiled, _chain) else (compiled,)
    try:
        # The message chain.apply_async would send, without re-cloning and freezing
        # every signature of the canvas (a third of a start): the first step, carrying
        # the rest in ``chain`` (next step last), as the worker's tracer expects.
        app.send_task(first.task, kwargs=first.kwargs, chain=[dict(s) for s in reversed(rest)] or None,
                      countdown=dispatch.countdown or None, producer=producer, **first.options)
    except (KombuOperationalError, OSError) as exc:
        raise BrokerUnavailable(maybe_sanitize_url(app.conf.broker_url), dispatch.instance_id, exc) from None


def publish_all(dispatches: list[Dispatch]) -> None:
    """Publish each dispatch through one producer; one the broker refuses is left to the reconciler.

    Where the transport can (Redis), the messages go out in pipelined batches
    (kombu's ``Producer.batch``): one round trip per thousand, not one each.
    """
    if not dispatches:
        return
    app = current()
    try:
        with app.producer_or_acquire() as producer, _batched(producer):
            for dispatch in chunked(dispatches):
                try:
                    publish(dispatch, producer)
                except BrokerUnavailable as exc:
                    logger.warning("%s", exc)
    except (KombuOperationalError, OSError) as exc:
        logger.warning("cannot reach the broker at %s (%s); %d recorded step(s) are left to the reconciler",
                       maybe_sanitize_url(app.conf.broker_url), exc, len(dispatches))
