"""``oms workflow register | list | show``: workflow definitions and their versions."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import click
import yaml

from ..catalog import Workflow
from ..exceptions import InvalidDefinition, OmsError
from ..reads import list_workflows
from ..store.catalog import load_definition
from ..store.db import transaction
from . import render
from .base import CONTEXT, OmsGroup, env_option

#: File suffixes ``oms workflow register`` reads, and how.
DATA_SUFFIXES = (".yaml", ".yml", ".json")


def load_file(path: Path) -> list[Workflow]:
    """The definitions in a YAML or JSON file, or the ``Workflow`` objects a Python module defines.

    A module runs under its own name (not ``__main__``), as an import would run it.
    """
    if path.suffix in DATA_SUFFIXES:
        return [Workflow.from_file(path)]
    if path.suffix != ".py":
        raise InvalidDefinition(f"{path}: expected a Python module (.py), YAML (.yaml, .yml) or JSON (.json) file")
    if not path.is_file():
        raise InvalidDefinition(f"cannot read {path}: no such file")
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        namespace = runpy.run_path(str(path), run_name=path.stem)
    except OmsError:
        raise
    except (Exception, SystemExit) as exc:  # the module is the user's code: any failure is a bad file
        raise InvalidDefinition(f"cannot load {path}: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(path.parent.resolve()))
    found = [value for value in namespace.values() if isinstance(value, Workflow)]
    if not found:
        raise InvalidDefinition(f"{path} defines no Workflow (expected e.g. `wf = Workflow(id=..., steps=[...])`)")
    return found


@click.group(cls=OmsGroup, context_settings=CONTEXT)
def workflow() -> None:
    """Register, list and show workflow definitions."""


@workflow.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="FILE...")
def register(files: tuple[Path, ...]) -> None:
    """Save the workflows defined in FILE... and print their versions.

    A file is a Python module defining Workflow objects, or a YAML or JSON file
    holding one definition. Every file is checked before anything is saved. An
    unchanged definition keeps its version; a changed one becomes version n+1.

    \b
    Examples:
      oms workflow register examples/workflows/epa_waste_registration.py
      oms workflow register epa.yaml permits.json
    """
    definitions = [definition for path in files for definition in load_file(path)]
    for definition in definitions:
        click.echo(f"{definition.id} version {definition.save()} ({len(definition.steps)} steps)")


@workflow.command("list", context_settings=CONTEXT)
@env_option("--all", "include_system", env="OMS_ALL", is_flag=True,
            help="Include the engine's own workflows (oms.sla_violation, oms.sla_warning).")
@env_option("--json", "as_json", env="OMS_JSON", is_flag=True, help="Print the workflows as JSON.")
def list_(include_system: bool, as_json: bool) -> None:
    """List saved workflows at their latest version, with their instances by status.

    \b
    Examples:
      oms workflow list
      oms workflow list --all --json
    """
    found = list_workflows(include_system)
    if as_json:
        render.as_json(found)
        return
    if not found:
        click.echo("(no workflows: oms workflow register FILE)", err=True)
        return
    rows = [
        [w.id, str(w.latest_version), w.flow, render.moment(w.saved_at),
         ", ".join(f"{n} {s}" for s, n in sorted(w.instances.items())) or "none"]
        for w in found
    ]
    render.table(["workflow", "version", "steps", "saved", "instances"], rows)


@workflow.command(context_settings=CONTEXT)
@click.argument("workflow_id", metavar="ID")
@env_option("--version", "version", env="OMS_WORKFLOW_VERSION", type=click.IntRange(min=1),
            help="This version instead of the latest.")
@env_option("--json", "as_json", env="OMS_JSON", is_flag=True, help="Print JSON instead of YAML.")
def show(workflow_id: str, version: int | None, as_json: bool) -> None:
    """Print a definition as YAML (or JSON), ready to edit and register again.

    The YAML starts with comments naming the version shown and drawing the steps as a
    graph: which step leads to which, where branches fan out, join and map.

    \b
    Examples:
      oms workflow show epa_waste_reg
      oms workflow show epa_waste_reg --version 1 > epa.yaml && oms workflow register epa.yaml
    """

    with transaction() as session:
        definition, found = load_definition(session, workflow_id, version)
    if as_json:
        click.echo(json.dumps(definition.spec(), indent=2))
    else:
        click.echo(f"# {workflow_id} version {found}")
        click.echo("#")
        for line in render.graph(definition):
            click.echo(f"#   {line}")
        click.echo("#")
        click.echo(yaml.safe_dump(definition.spec(), sort_keys=False, allow_unicode=True).rstrip())
