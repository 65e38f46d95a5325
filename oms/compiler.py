"""Moved: the compiler is :mod:`oms.celery.compiler`. This name keeps working, with a warning that says so."""

from __future__ import annotations

import warnings
from typing import Any

from .celery import compiler


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    warnings.warn(f"oms.compiler moved to oms.celery.compiler: import {name} from there", DeprecationWarning,
                  stacklevel=2)
    return getattr(compiler, name)
