"""Teacher accounts over HTTP, for the admin key: ``/api/teachers``."""

from __future__ import annotations

import logging

from aiohttp import web

from .audit_api import audit
from .auth import require_admin
from .contracts import AccountExistsError, AuditAction
from .errors import http_error, json_object
from .json_answers import json_response
from .keys import ACCOUNTS

logger = logging.getLogger(__name__)


async def add_teacher(request: web.Request) -> web.Response:
    """``{"name": ...}`` → ``201 {"name", "key"}``: the key is shown this once only."""
    require_admin(request)
    body = await json_object(request)
    unknown = set(body) - {"name"}
    if unknown:
        raise http_error(400, "unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    name = body.get("name")
    if not isinstance(name, str):
        raise http_error(400, "bad_name", "name must be a string")
    try:
        key = request.app[ACCOUNTS].add(name)
    except ValueError as exc:
        raise http_error(400, "bad_name", str(exc)) from None
    except AccountExistsError as exc:
        raise http_error(409, "teacher_exists", str(exc)) from None
    audit(request, AuditAction.TEACHER_ADDED, detail=str(name))
    logger.info("teacher account %r added", name)
    return json_response(
        {"name": name, "key": key},
        status=201,
        headers={"Location": f"/api/teachers/{name}", "Cache-Control": "no-store"},
    )


async def list_teachers(request: web.Request) -> web.Response:
    require_admin(request)
    return json_response(
        {
            "teachers": [
                {"name": a.name, "built_in": a.built_in, "created_at": a.created_at}
                for a in request.app[ACCOUNTS].list()
            ]
        }
    )


async def remove_teacher(request: web.Request) -> web.Response:
    """The account's key stops working at once; its lessons pass to the admin."""
    require_admin(request)
    name = request.match_info["name"]
    try:
        removed = request.app[ACCOUNTS].remove(name)
    except ValueError as exc:
        raise http_error(409, "built_in", str(exc)) from None
    if not removed:
        raise http_error(404, "no_such_teacher", f"there is no teacher account {name[:64]!r}")
    audit(request, AuditAction.TEACHER_REMOVED, detail=name)
    logger.info("teacher account %r removed", name)
    return json_response({"deleted": name})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/teachers", add_teacher)
    app.router.add_get("/api/teachers", list_teachers)
    app.router.add_delete("/api/teachers/{name}", remove_teacher)
