"""JSON request bodies, read strictly: UTF-8 only, and no key twice in any object.

Starlette's ``json.loads`` keeps the last of two equal keys (``{"payload": {"b": 1,
"b": 2}}`` started with ``b: 2``) and guesses UTF-16 and UTF-32. Every router's
routes are :class:`JsonRoute`, whose request parses its body once with the same
duplicate check as definition files (:func:`oms.model.files.unique_keys`); a body
it refuses is 400 ``MalformedJson`` naming the key, and nothing is stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from ..model.files import DuplicateKey, unique_keys


class StrictJsonRequest(Request):
    """A request whose ``json()`` refuses a duplicate key and any encoding but UTF-8 (400 ``MalformedJson``)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HTTPException(400, f"the request body is not UTF-8 (byte {exc.start}: {exc.reason})") from None
            try:
                self._json = json.loads(text, object_pairs_hook=unique_keys)
            except DuplicateKey as exc:
                raise HTTPException(400, f"duplicate key {exc.key!r:.80} in the request body") from None
        return self._json


class JsonRoute(APIRoute):
    """A route whose JSON body is read by :class:`StrictJsonRequest` (``APIRouter(route_class=JsonRoute)``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
