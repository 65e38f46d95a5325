"""Definition files, read strictly: UTF-8, JSON or YAML, no duplicate keys, no YAML 1.1 surprises.

A duplicate key silently keeps the last value in both parsers, and YAML 1.1 reads
``sla: 1:30`` as the number 90 (base 60): an SLA of 90 seconds nobody wrote. Here a
duplicate key is refused, and ``1:30`` stays the string it looks like (then
refused as a duration). Errors are :class:`~oms.exceptions.InvalidDefinition`
naming the file, never a traceback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from ..exceptions import InvalidDefinition


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without sexagesimal numbers, refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1's int and float resolvers, without their base-60 forms (``1:30``): those stay strings.
_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NUMBERS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


class DuplicateKey(ValueError):
    """A JSON object names the same key twice: the parser would keep the last value silently."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"duplicate key {key!r}")


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook`` that refuses a duplicate key (:class:`DuplicateKey`): the one rule
    for definition files and every JSON body of the HTTP API."""
    found = dict(pairs)  # built in C; only a body with a duplicate is walked again, to name it
    if len(found) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return found


def read_definition(path: Path, keys: str = "'id' and 'steps'") -> dict[str, Any]:
    """The mapping a ``.json``, ``.yaml`` or ``.yml`` file holds, or :class:`InvalidDefinition` saying why not
    (``keys``: what the mapping should hold, for the message)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidDefinition(f"cannot read {path}: {exc.strerror}") from None
    kind = "json" if path.suffix == ".json" else path.suffix.lstrip(".") or "YAML"
    return parse_definition(raw, kind, str(path), keys)


def parse_definition(raw: bytes, kind: str, source: str, keys: str = "'id' and 'steps'") -> dict[str, Any]:
    """The mapping ``raw`` holds as JSON (``kind`` ``json``) or YAML (any other), read as strictly as a file."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidDefinition(f"{source} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        data = (json.loads(text, object_pairs_hook=unique_keys) if kind == "json"
                else yaml.load(text, Loader=_StrictLoader))
    except RecursionError:
        raise InvalidDefinition(f"{source} is nested too deeply to be a definition") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidDefinition(f"{source} is not valid {kind}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise InvalidDefinition(f"{source} must hold a mapping with {keys}")
    return data
