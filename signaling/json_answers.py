"""The API's JSON answers: UTF-8 text, not ASCII-escaped, so a Chinese title reads as
itself in ``curl`` and in logs (``application/json; charset=utf-8``)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def dumps(data: Any) -> str:
    """``data`` as JSON text in UTF-8 terms (escaped only if it holds a lone surrogate, which
    UTF-8 cannot carry)."""
    text = json.dumps(data, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data)
    return text


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Every JSON answer of the API, so that none is ASCII-escaped."""
    return web.json_response(data, status=status, headers=headers, dumps=dumps)
