"""Who is asking: the teacher key or a lesson token, read from the Authorization header."""

from __future__ import annotations

from aiohttp import web

from .contracts import Grant, Role, TokenError
from .errors import http_error
from .keys import AUTHORITY

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="syncclass"'}


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise http_error(
            401, "unauthorized", "an Authorization: Bearer header is required", _CHALLENGE
        )
    return credential.strip()


def credential_of(request: web.Request) -> str | None:
    """The Bearer token, or else a ``?token=`` (for links and WebSockets), if any."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    return request.query.get("token") or None


def is_teacher(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    return scheme.lower() == "bearer" and request.app[AUTHORITY].is_teacher_key(credential.strip())


def require_teacher(request: web.Request) -> None:
    if not request.app[AUTHORITY].is_teacher_key(bearer(request)):
        raise http_error(401, "unauthorized", "the teacher key is required", _CHALLENGE)


def grant_for(request: web.Request, lesson_id: str, roles: set[Role]) -> Grant:
    """The caller's grant on ``lesson_id``; 401 for a bad token, 403 for the wrong one."""
    return grant_of(request, bearer(request), lesson_id, roles)


def grant_of(request: web.Request, token: str, lesson_id: str, roles: set[Role]) -> Grant:
    """``token``'s grant on ``lesson_id``, for tokens that do not come in a header."""
    try:
        grant = request.app[AUTHORITY].verify(token)
    except TokenError as exc:
        raise http_error(401, "invalid_token", str(exc), _CHALLENGE) from exc
    if grant.lesson_id != lesson_id:
        raise http_error(403, "wrong_lesson", "this token belongs to another lesson")
    if grant.role not in roles:
        allowed = " or ".join(sorted(r.value for r in roles))
        raise http_error(
            403, "wrong_role", f"a {grant.role.value} token cannot do this (needs {allowed})"
        )
    return grant
