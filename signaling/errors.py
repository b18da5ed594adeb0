"""Errors as HTTP responses: a status and a JSON body that says what is wrong."""

from __future__ import annotations

import json

from aiohttp import web


def http_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.HTTPException:
    """An exception to raise from a handler; aiohttp turns it into the response."""
    body = json.dumps({"error": code, "message": message})
    exc = web.HTTPException(text=body, content_type="application/json", headers=headers or {})
    exc.set_status(status)
    return exc
