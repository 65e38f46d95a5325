"""The API's routes as FastAPI holds them, and which methods a path allows (the ``Allow`` header of a 405)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute


def routes(app: FastAPI) -> list[APIRoute]:
    """Every API route of ``app``, its routers' too (FastAPI keeps an included router whole)."""
    found: list[APIRoute] = []
    for route in app.router.routes:
        inner: Any = getattr(route, "original_router", None)
        found += [r for r in (inner.routes if inner is not None else [route]) if isinstance(r, APIRoute)]
    return found


def allowed(app: FastAPI, path: str) -> list[str]:
    """The methods some route serves at ``path`` (HEAD with GET): a path may have a route per method."""
    methods = {method for route in routes(app) if route.path_regex.match(path) for method in route.methods or ()}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
