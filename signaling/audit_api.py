"""The audit log over HTTP: ``GET /api/audit`` (admin key), and the one call handlers make to
add to it."""

from __future__ import annotations

from aiohttp import web

from .auth import actor_of, require_admin
from .contracts import AuditAction
from .errors import http_error
from .json_answers import json_response
from .keys import AUDIT

MAX_LIMIT = 10_000


def audit(
    request: web.Request, action: AuditAction, lesson_id: str | None = None, detail: str = ""
) -> None:
    """Record that the caller (after their credential was accepted) did ``action``."""
    request.app[AUDIT].record(actor_of(request), action, lesson_id, detail)


async def list_audit(request: web.Request) -> web.Response:
    """``?lesson=ID`` for one lesson's entries, ``?limit=N`` for the newest N (oldest first)."""
    require_admin(request)
    lesson_id = request.query.get("lesson") or None
    text = request.query.get("limit", "1000")
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise http_error(400, "bad_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    entries = request.app[AUDIT].entries(lesson_id, int(text))
    return json_response(
        {
            "entries": [
                {
                    "at": entry.at,
                    "actor": entry.actor,
                    "action": entry.action,
                    "lesson_id": entry.lesson_id,
                    "detail": entry.detail,
                }
                for entry in entries
            ]
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/audit", list_audit)
