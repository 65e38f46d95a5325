"""The errors the README tells callers to catch exist at the names it gives (``except oms.BrokerUnavailable:``
must not itself fail with ``AttributeError`` during an outage), and every error oms raises is one of them."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

import act
import act.exceptions
import oms
import oms.exceptions

from ..workers import ROOT

NAMED = sorted(set(re.findall(r"\b((?:hms_)?(?:oms|act))\.([A-Z]\w*)", (ROOT / "README.md").read_text())))


def test_the_readme_names_errors_at_the_front_door() -> None:
    assert ("oms", "InvalidArgument") in NAMED and ("act", "InvalidArgument") in NAMED


@pytest.mark.parametrize(("package", "name"), NAMED, ids=[f"{p}.{n}" for p, n in NAMED])
def test_every_name_the_readme_gives_imports(package: str, name: str) -> None:
    module = importlib.import_module(package)
    assert name in module.__all__, f"README.md names {package}.{name}, which {package} does not export"
    assert getattr(module, name) is not None


def test_every_oms_error_is_exported_by_oms() -> None:
    errors = {name for name, cls in inspect.getmembers(oms.exceptions, inspect.isclass)
              if issubclass(cls, oms.exceptions.OmsError) and cls.__module__ == "oms.exceptions"}
    assert errors - set(oms.__all__) == set()
    assert all(getattr(oms, name) is getattr(oms.exceptions, name) for name in errors)


def test_every_worker_error_is_exported_by_act() -> None:
    assert set(act.exceptions.__all__) - set(act.__all__) == set()
