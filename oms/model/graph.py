"""A workflow's steps as a graph: who comes after whom, where runs stay straight, what a map reads.

Steps name their predecessors with ``after``; a step without it follows the step
listed before it, so a plain list is a straight line. A step whose predecessors are
all done is ready; a step with several is a join; the steps with none start
together. ``map`` runs a step once per item of a JSON list, read from the payload or
from an earlier step's result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..states import StepKind

if TYPE_CHECKING:
    from .definitions import Step

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class MapPath:
    """Where a mapped step's list is: ``payload.a.b`` or ``results.<step>.a.b``."""

    text: str
    #: ``payload`` or ``results``.
    source: str
    #: The step whose result holds the list (``results`` paths only).
    step: str | None
    keys: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> MapPath:
        """Parse a path, or raise ``ValueError`` saying what is wrong with it."""
        parts = text.split(".") if isinstance(text, str) else []
        if not parts or parts[0] not in ("payload", "results") or not all(_SEGMENT.fullmatch(p) for p in parts[1:]):
            raise ValueError(
                f"map path {text!r} must be 'payload.<key>…' or 'results.<step>.<key>…' (keys of letters, digits, "
                "'_' or '-'; digits index a list)"
            )
        if parts[0] == "results":
            if len(parts) < 2:
                raise ValueError(f"map path {text!r} must name the step whose result holds the list")
            return cls(text, "results", parts[1], tuple(parts[2:]))
        return cls(text, "payload", None, tuple(parts[1:]))

    def resolve(self, payload: dict[str, Any], results: dict[str, Any]) -> list[Any]:
        """The list at this path, or ``ValueError`` saying what was found instead."""
        value: Any = payload if self.source == "payload" else results
        for key in ((self.step,) if self.step else ()) + self.keys:
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                raise ValueError(f"map path {self.text!r} does not resolve: no {key!r} there")
        if not isinstance(value, list):
            raise ValueError(f"map path {self.text!r} is not a list (found {type(value).__name__})")
        return value


@dataclass(frozen=True)
class Graph:
    """Predecessors and successors of each step, by index, and the straight runs between them."""

    ids: tuple[str, ...]
    predecessors: tuple[tuple[int, ...], ...]
    successors: tuple[tuple[int, ...], ...]
    maps: tuple[MapPath | None, ...]
    #: Whether a worker runs each step (not a person, a signal or a timer): only such steps ride a Celery chain.
    workers: tuple[bool, ...]

    @classmethod
    def of(cls, steps: Sequence[Step]) -> Graph:
        """Build and check the graph; ``ValueError`` names the culprit (unknown id, cycle, bad map path)."""
        ids = tuple(step.id for step in steps)
        index = {step_id: i for i, step_id in enumerate(ids)}
        predecessors: list[tuple[int, ...]] = []
        for i, step in enumerate(steps):
            if step.after is None:
                predecessors.append((i - 1,) if i else ())
                continue
            found = []
            for name in step.after:
                if name not in index:
                    raise ValueError(f"steps[{i}].after: unknown step {name!r} (step {step.id!r})")
                if name == step.id:
                    raise ValueError(f"steps[{i}].after: step {step.id!r} cannot come after itself")
                if index[name] in found:
                    raise ValueError(f"steps[{i}].after: {name!r} listed twice (step {step.id!r})")
                found.append(index[name])
            predecessors.append(tuple(found))
        successors: list[list[int]] = [[] for _ in ids]
        for i, before in enumerate(predecessors):
            for p in before:
                successors[p].append(i)
        graph = cls(ids, tuple(predecessors), tuple(tuple(s) for s in successors),
                    tuple(MapPath.parse(s.map) if s.map is not None else None for s in steps),
                    tuple(s.kind is StepKind.WORKER for s in steps))
        graph._check_acyclic()
        graph._check_maps()
        return graph

    def stages(self) -> list[list[int]]:
        """The steps by stage: a step runs one stage after the latest of its predecessors, so the steps of one
        stage can run at the same time (``oms workflow list``)."""
        depth: dict[int, int] = {}

        def of(i: int) -> int:
            if i not in depth:
                depth[i] = 1 + max((of(p) for p in self.predecessors[i]), default=-1)
            return depth[i]

        grouped: dict[int, list[int]] = {}
        for i in range(len(self.ids)):
            grouped.setdefault(of(i), []).append(i)
        return [grouped[k] for k in sorted(grouped)]

    def _check_acyclic(self) -> None:
        state = [0] * len(self.ids)  # 0 unseen, 1 on the path, 2 finished
        path: list[int] = []

        def visit(i: int) -> None:
            state[i] = 1
            path.append(i)
            for s in self.successors[i]:
                if state[s] == 1:
                    cycle = [self.ids[j] for j in path[path.index(s):]] + [self.ids[s]]
                    raise ValueError(f"the steps form a cycle: {' -> '.join(cycle)}")
                if state[s] == 0:
                    visit(s)
            path.pop()
            state[i] = 2

        for i in range(len(self.ids)):
            if state[i] == 0:
                visit(i)

    def _check_maps(self) -> None:
        for i, path in enumerate(self.maps):
            if path is not None and path.source == "results":
                if path.step not in self.ids:
                    raise ValueError(f"steps[{i}].map: unknown step {path.step!r} in {path.text!r}")
                if self.ids.index(path.step) not in self.ancestors(i):
                    raise ValueError(f"steps[{i}].map: {path.text!r} reads the result of {path.step!r}, which does "
                                     f"not come before {self.ids[i]!r}")

    def ancestors(self, index: int) -> set[int]:
        """Every step that must be done before step ``index`` is ready."""
        found: set[int] = set()
        stack = list(self.predecessors[index])
        while stack:
            p = stack.pop()
            if p not in found:
                found.add(p)
                stack.extend(self.predecessors[p])
        return found

    @property
    def roots(self) -> tuple[int, ...]:
        """The steps that start with the instance."""
        return tuple(i for i, before in enumerate(self.predecessors) if not before)

    def is_join(self, index: int) -> bool:
        return len(self.predecessors[index]) > 1

    def chained(self, index: int) -> int | None:
        """The step that follows ``index`` in a straight run: its only successor, of which it is the only
        predecessor, neither of them mapped, both run by workers. A Celery chain carries the run; anything else the
        engine offers."""
        after = self.successors[index]
        if len(after) == 1 and len(self.predecessors[after[0]]) == 1 and not self.maps[index] \
                and not self.maps[after[0]] and self.worker(index) and self.worker(after[0]):
            return after[0]
        return None

    def worker(self, index: int) -> bool:
        """Whether a worker runs step ``index`` (its message is published), not a person, a signal or the clock."""
        return self.workers[index]

    def run(self, index: int) -> list[int]:
        """The straight run from ``index``: the steps one Celery chain carries."""
        run = [index]
        while (following := self.chained(run[-1])) is not None:
            run.append(following)
        return run

    @property
    def is_line(self) -> bool:
        """Whether every step follows the one before it, none mapped: the workflows of release 0.1."""
        return all(before == ((i - 1,) if i else ()) for i, before in enumerate(self.predecessors)) \
            and not any(self.maps)
