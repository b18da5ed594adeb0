"""Errors as HTTP responses: a status and a JSON body that says what is wrong."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def http_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.HTTPException:
    """An exception to raise from a handler; aiohttp turns it into the response."""
    body = json.dumps({"error": code, "message": message})
    exc = web.HTTPException(text=body, content_type="application/json", headers=headers or {})
    exc.set_status(status)
    return exc


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise http_error(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise http_error(400, "malformed_json", "the body must be a JSON object")
    return body
