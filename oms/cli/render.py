"""Plain-text output of the ``oms`` command: aligned columns, coloured lights, compact times.

Plain text (not boxes) so that ``oms list | grep red`` works; colour only on a
terminal (click drops it when the output is piped).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
from pydantic import TypeAdapter

from ..durations import format_duration
from ..model.worktime import format_sla

if TYPE_CHECKING:
    from ..model.definitions import Definition, Step

#: Colours of the lights and of the statuses that need attention.
COLOURS = {"green": "green", "yellow": "yellow", "red": "red", "failed": "red", "cancelled": "magenta"}

#: A cell: its text, or its text and the colour to show it in.
Cell = str | tuple[str, str]


def light(value: str, why: str = "") -> Cell:
    """A light in words and colour, with why it is so (`` (paused)``) when that is not the plain clock."""
    return (value + why, COLOURS.get(value, ""))


def status(value: str) -> Cell:
    return (value, COLOURS.get(value, ""))


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
    """Echo ``rows`` under ``headers`` in aligned columns."""
    texts = [[c if isinstance(c, str) else c[0] for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in texts) for i in range(len(headers))]
    for number, row in enumerate([headers, *rows]):
        cells = []
        for i, cell in enumerate(row):
            text, colour = (cell, "") if isinstance(cell, str) else cell
            padded = text.ljust(widths[i]) if i < len(row) - 1 else text
            cells.append(click.style(padded, fg=colour or None, bold=number == 0))
        click.echo("  ".join(cells).rstrip())


def seconds(value: float | None) -> str:
    """``0.21s``, ``12.3s``, ``4m10s``; ``-`` for a duration not known yet."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    return format_duration(timedelta(seconds=round(value)))


def moment(value: datetime | None, precise: bool = False) -> str:
    """A UTC time, to the second (or the millisecond when ``precise``)."""
    if value is None:
        return "-"
    text = value.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return (text[:-3] if precise else text[:-7]) + "Z"


#: Serialises what it is given as its runtime type says: models, dataclasses, lists of them, times in ISO 8601.
_ANY: TypeAdapter[Any] = TypeAdapter(Any)


def as_json(value: object) -> None:
    """Echo a model or a dataclass, or a list of them, as indented JSON."""
    click.echo(json.dumps(_ANY.dump_python(value, mode="json"), indent=2))


def candidates(assign: dict[str, list[str]] | None) -> str:
    """Who may claim a human step: ``group inspectors, alice``."""
    assign = assign or {}
    return ", ".join([*(f"group {g}" for g in assign.get("groups", [])), *assign.get("users", [])]) or "nobody"


def _ended_by(step: Step) -> str:
    if step.assign is not None:
        return f" [human: {candidates(step.assign.model_dump())}]"
    if step.wait_for is not None:
        return f" [signal {step.wait_for}]"
    return "" if step.sleep is None else f" [sleep {format_sla(step.sleep)}]"


def graph(workflow: Definition) -> list[str]:
    """The steps as arrows, one source step per block: fan-outs branch, joins and maps say so.

    ``a ─┬─▶ b`` / ``   └─▶ c`` for a fan-out, ``(waits for b, c)`` on a join,
    ``(each of payload.items)`` on a mapped step; first steps are marked ``●``; a step no worker
    runs says who ends it (``[human: group inspectors]``, ``[signal form_submitted]``, ``[sleep 10bd]``).
    """
    g = workflow.graph
    ids = [step.id + _ended_by(step) for step in workflow.steps]

    def target(index: int) -> str:
        notes = []
        if g.is_join(index):
            notes.append("waits for " + ", ".join(ids[p] for p in g.predecessors[index]))
        if g.maps[index] is not None:
            notes.append(f"each of {g.maps[index].text}")  # type: ignore[union-attr]
        return ids[index] + (f"  ({'; '.join(notes)})" if notes else "")

    lines = []
    for index, step_id in enumerate(ids):
        head = ("● " if not g.predecessors[index] else "  ") + step_id
        following = g.successors[index]
        if not following:
            lines.append(f"{head}  (end)")
        elif len(following) == 1:
            lines.append(f"{head} ───▶ {target(following[0])}")
        else:
            pad = " " * len(head)
            lines.append(f"{head} ─┬─▶ {target(following[0])}")
            lines.extend(f"{pad}  {'└' if n == len(following) - 1 else '├'}─▶ {target(s)}"
                         for n, s in enumerate(following[1:], start=1))
    return lines
