"""``oms.track(canvas, workflow=...)``: SLA lights on plain Celery chains, groups and chords.

The canvas is walked into a tracked definition (one step per task, its shape as
the graph), an instance is started, each task is given the Celery id
``<instance_id>.<step index>`` and the canvas is applied as ``apply_async`` would.
Celery publishes and runs it; its signals record each transition
(:mod:`oms.engine.tracking`), so lights, escalations and reads work as for any
workflow. Importing :mod:`oms` connects the receivers.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from celery import current_app
from celery.canvas import Signature, _chain, _chord, group, maybe_signature

from .celery.tracked import CELERY_ID, tracked_id
from .engine import tracking
from .engine.control import cancel_workflow
from .engine.starts import start
from .exceptions import ConfigurationError, InvalidArgument, InvalidPayload
from .model.definitions import Definition
from .store.catalog import ensure_saved

__all__ = ["track", "shape"]


def _walk(sig: Any, before: list[int], leaves: list[Signature]) -> list[int]:
    """Add ``sig``'s tasks to ``leaves``, each after ``before``; return the steps what follows it waits for."""
    sig = maybe_signature(sig, app=current_app)
    if isinstance(sig, _chord):
        return _walk(sig.body, _walk(group(sig.tasks), before, leaves), leaves)
    if isinstance(sig, _chain):
        for member in sig.tasks:
            before = _walk(member, before, leaves)
        return before
    if isinstance(sig, group):
        tails: list[int] = []
        for member in sig.tasks:
            tails += _walk(member, before, leaves)
        return tails
    if not isinstance(sig, Signature):
        raise InvalidArgument(f"oms.track: expected a Celery signature or canvas, not {type(sig).__name__}")
    leaves.append(sig)
    sig.options["_oms_after"] = list(before)  # read back (and dropped) by shape()
    return [len(leaves) - 1]


def shape(canvas: Any, workflow: str, sla: Any = None) -> tuple[Definition, list[Signature]]:
    """The tracked definition of ``canvas`` (one step per task: chain = sequence, group = parallel, chord = header
    then body) and its tasks' signatures, in step order.

    A step is named after its task (the last part of the name), numbered ``_1``, ``_2``…
    when the name repeats; its SLA is the signature's ``.set(sla=...)``, else the task's own
    ``sla`` option, else none (only the instance's ``sla`` then holds).
    """
    leaves: list[Signature] = []
    _walk(canvas, [], leaves)
    if not leaves:
        raise InvalidArgument("oms.track: the canvas holds no task")
    names = [tracking.step_name(str(leaf.task)) for leaf in leaves]
    repeated, seen = Counter(names), Counter[str]()
    ids = []
    for name in names:
        seen[name] += 1
        ids.append(f"{name}_{seen[name]}" if repeated[name] > 1 else name)
    steps = []
    for index, leaf in enumerate(leaves):
        own = current_app.tasks.get(str(leaf.task))
        step_sla = leaf.options.get("sla") or getattr(own, "sla", None)
        after = [ids[p] for p in leaf.options.pop("_oms_after")]
        steps.append({"id": ids[index], "task": str(leaf.task), "sla": step_sla, "after": after,
                      "retries": tracking.TRACKED_RETRIES})
    return Definition(id=workflow, tracked=True, sla=sla, steps=steps), leaves


def track(signature: Any, workflow: str, sla: Any = None, payload: dict[str, Any] | None = None,
          idempotency_key: str | None = None) -> str:
    """Apply ``signature`` (a task's signature, a chain, group, chord, nested) as ``apply_async`` would, tracked as
    an instance of ``workflow`` with the instance SLA ``sla``; return the instance id (``wf-…``).

    Each task gets the Celery id ``<instance_id>.<step index>``. With an ``idempotency_key``,
    a repeated call returns the first call's instance and applies nothing.

    Raises:
        InvalidArgument: not a canvas, or one with no task.
        ConfigurationError: a chord (or a group followed by a task), on an app with no result backend: Celery
            cannot apply it; the instance is recorded cancelled, with the reason.
        InvalidDefinition: the workflow name or an SLA is not valid.
        InvalidPayload: ``payload`` is not a JSON object (or holds the reserved key ``celery_task_id``).
    """
    if isinstance(payload, dict) and CELERY_ID in payload:
        raise InvalidPayload(f"payload: the key {CELERY_ID!r} is kept for tasks tracked on their own")
    definition, leaves = shape(signature, workflow, sla)
    ensure_saved(definition)
    instance_id, created = start(definition.id, payload, idempotency_key=idempotency_key)
    if not created:
        return instance_id
    for index, leaf in enumerate(leaves):
        leaf.options["task_id"] = tracked_id(instance_id, index)
        leaf.options.pop("sla", None)
    try:
        maybe_signature(signature, app=current_app).apply_async()
    except NotImplementedError as exc:  # Celery's refusal of a chord (a group then a task) with no result backend
        reason = f"the canvas could not be applied: {exc} (set the app's result_backend: a chord needs one)"
        cancel_workflow(instance_id, reason)
        raise ConfigurationError(f"oms.track: {reason}; {instance_id} is cancelled") from exc
    except BaseException:
        cancel_workflow(instance_id, "the canvas could not be applied")
        raise
    return instance_id


tracking.connect()
