"""``act`` reaches the engine through one narrow door: ``oms`` (the public API), ``oms.door`` and ``oms.exceptions``.

The engine's internals (its transitions, database, scanner, schema) may change
shape freely as long as the door keeps its promises; an import that reaches past
it fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import act

ALLOWED = {"oms", "oms.engine", "oms.engine.door", "oms.exceptions"}


def test_act_imports_only_the_door_and_the_public_api() -> None:
    reached: dict[str, set[str]] = {}
    for path in sorted(Path(act.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            for name in names:
                if name == "oms" or name.startswith("oms."):
                    reached.setdefault(name, set()).add(path.name)
    assert reached, "act no longer imports oms at all?"
    assert set(reached) <= ALLOWED, {name: files for name, files in reached.items() if name not in ALLOWED}
