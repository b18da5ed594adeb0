"""Errors as HTTP responses: a status and a JSON body that says what is wrong."""

from __future__ import annotations

import errno
import json
import logging
import math
import sqlite3
from typing import Any

from aiohttp import web

from .json_answers import dumps


def http_error(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> web.HTTPException:
    """An exception to raise from a handler; aiohttp turns it into the response. ``extra``:
    more fields for the body (what would have been right)."""
    body = dumps({"error": code, "message": message, **(extra or {})})
    exc = web.HTTPException(text=body, content_type="application/json", headers=headers or {})
    exc.set_status(status)
    return exc


logger = logging.getLogger(__name__)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a write failed for lack of space (a file's or SQLite's)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.OperationalError):
        return "full" in str(exc)
    return False


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A failure no handler foresaw is still answered as the API answers: a JSON body with
    ``error`` and ``message`` (507 ``disk_full`` when the disk is full), never a plain page."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except web.HTTPException:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            logger.error("%s %s: the disk is full (%s)", request.method, request.path, exc)
            raise http_error(
                507, "disk_full", "the server's disk is full; try again in a moment"
            ) from None
        logger.exception("%s %s failed", request.method, request.path)
        raise http_error(500, "internal_error", "the server failed to answer this") from None


def setup_json_errors(app: web.Application) -> None:
    app.middlewares.insert(0, json_errors)


MAX_JSON_BYTES = 16 * 1024  # a request's JSON fields are short: titles, names, flags


async def read_body(request: web.Request, limit: int, code: str, what: str) -> bytes:
    """The whole request body, or a 413 ``code`` once it is known to exceed ``limit`` bytes.

    ``request.content.read(n)`` returns what has arrived so far, which is only part of a body
    that comes in several TCP segments (an SDP offer over a slow link)."""
    too_large = http_error(413, code, f"{what} exceeds {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 4xx that says what is wrong with it."""
    data = await read_body(request, MAX_JSON_BYTES, "body_too_large", "the JSON body")
    try:
        body = json.loads(data)
        # a lone UTF-16 surrogate ("\ud800") is no character: it could be neither stored
        # nor shown, so it is refused here rather than failing deeper down
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as exc:  # also bad UTF-8 and numbers of 4300+ digits
        raise http_error(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise http_error(400, "malformed_json", "the body must be a JSON object")
    return body


def query_number(
    request: web.Request, name: str, unit: str, empty_is_absent: bool = False
) -> float | None:
    """The query parameter ``name`` as a finite number (None if it is not given), or a 400
    ``bad_<name>`` that says it must be a number of ``unit``."""
    text = request.query.get(name)
    if text is None or (empty_is_absent and text == ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise http_error(400, f"bad_{name}", f"{name} must be a number ({unit})") from None
    if not math.isfinite(value):
        raise http_error(400, f"bad_{name}", f"{name} must be a finite number")
    return value
