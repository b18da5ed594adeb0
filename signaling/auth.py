"""Who is asking: an account key (a teacher's or the admin's) or a lesson token, read from the
Authorization header (or ``?token=`` where a browser cannot send headers), and whether that
lets them act on a lesson.

A teacher manages only the lessons their account created; the admin manages all. A lesson
token works for its own lesson and role only; a classroom or origin token stops working when
the teacher replaces that link, and origin and classroom tokens stop working when the lesson ends
(replay tokens, for the recording, do not).
"""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web

from .contracts import Account, Grant, Lesson, LessonState, Role, TokenError
from .errors import http_error
from .keys import ACCOUNTS, AUTHORITY, COURSES, STORE

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="syncclass"'}
# the roles of a lesson happening now; ending the lesson revokes them
LIVE_ROLES = frozenset({Role.ORIGIN, Role.CLASSROOM})


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


def account_for(request: web.Request, key: str) -> Account | None:
    """The account whose key ``key`` is, if any."""
    return request.app[ACCOUNTS].authenticate(key)


def account_of(request: web.Request) -> Account | None:
    """The account whose key is the Bearer credential, if any."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return account_for(request, credential.strip())


def may_manage(account: Account, lesson: Lesson) -> bool:
    return account.admin or lesson.owner == account.name


def _route_lesson(request: web.Request) -> Lesson | None:
    lesson_id = request.match_info.get("lesson_id")
    return None if lesson_id is None else request.app[STORE].get(lesson_id)


def _not_yours() -> web.HTTPException:
    return http_error(403, "not_your_lesson", "this lesson belongs to another teacher")


def _must_manage(request: web.Request, account: Account, lesson_id: str) -> None:
    """403 unless ``account`` owns the lesson or is the admin (an unknown lesson passes: the
    handler answers 404)."""
    lesson = request.app[STORE].get(lesson_id)
    if lesson is not None and not may_manage(account, lesson):
        raise _not_yours()


def is_teacher(request: web.Request) -> bool:
    """Whether the caller holds an account key; on a route of one lesson (``{lesson_id}`` in
    its path), one that may manage that lesson, so a handler cannot forget the owner check."""
    account = account_of(request)
    if account is None:
        return False
    lesson = _route_lesson(request)
    return lesson is None or may_manage(account, lesson)


def require_teacher(request: web.Request) -> Account:
    """The caller's account: 401 without a valid key; on a route of one lesson, 403 unless
    the account owns that lesson or is the admin."""
    account = account_of(request)
    if account is None:
        raise http_error(401, "unauthorized", "a teacher's key is required", _CHALLENGE)
    lesson = _route_lesson(request)
    if lesson is not None and not may_manage(account, lesson):
        raise _not_yours()
    return account


def require_admin(request: web.Request) -> Account:
    account = account_of(request)
    if account is None:
        raise http_error(401, "unauthorized", "the admin key is required", _CHALLENGE)
    if not account.admin:
        raise http_error(403, "admin_only", "only the admin key can do this")
    return account


def key_manages(request: web.Request, key: str, lesson_id: str) -> bool:
    """Whether ``key`` (from wherever it came) is the key of the lesson's owner or of the
    admin; 403 for another teacher's key; False for anything that is not an account key."""
    account = account_for(request, key)
    if account is None:
        return False
    _must_manage(request, account, lesson_id)
    return True


def teacher_or_grant(
    request: web.Request,
    lesson_id: str,
    roles: set[Role],
    *,
    after_end: Collection[Role] = (),
) -> Account | Grant:
    """The owner's (or the admin's) account, else the grant of a lesson token in one of
    ``roles``; 403 for another teacher's key. ``after_end``: as in `grant_of`."""
    account = account_of(request)
    if account is None:
        return grant_for(request, lesson_id, roles, after_end=after_end)
    _must_manage(request, account, lesson_id)
    return account


def grant_for(
    request: web.Request,
    lesson_id: str,
    roles: set[Role],
    *,
    after_end: Collection[Role] = (),
) -> Grant:
    """The caller's grant on ``lesson_id``; 401 for a bad token, 403 for the wrong one."""
    return grant_of(request, bearer(request), lesson_id, roles, after_end=after_end)


def grant_of(
    request: web.Request,
    token: str,
    lesson_id: str,
    roles: set[Role],
    *,
    after_end: Collection[Role] = (),
) -> Grant:
    """``token``'s grant on ``lesson_id``, for tokens that do not come in a header.

    401 for a missing, malformed, tampered or expired token and for a classroom or origin
    link the teacher replaced; 403 for a token of another lesson or role; 410 for an origin or
    classroom token once the lesson has ended, unless its role is in ``after_end``: what
    reads the record a lesson leaves (its report, its recording) lets the origin through.
    """
    try:
        grant = request.app[AUTHORITY].verify(token)
    except TokenError as exc:
        account = account_for(request, token)
        if account is None:
            raise http_error(401, "invalid_token", str(exc), _CHALLENGE) from exc
        _must_manage(request, account, lesson_id)
        raise http_error(
            401,
            "invalid_token",
            "a teacher's key is not a lesson token: use the lesson's token",
            _CHALLENGE,
        ) from None
    if grant.lesson_id != lesson_id:
        raise http_error(403, "wrong_lesson", "this token belongs to another lesson")
    if grant.role not in roles:
        allowed = " or ".join(sorted(r.value for r in roles))
        raise http_error(
            403, "wrong_role", f"a {grant.role.value} token cannot do this (needs {allowed})"
        )
    lesson = request.app[STORE].get(lesson_id)
    if lesson is None:
        return grant  # the handler answers 404
    ended = lesson.state is LessonState.ENDED
    if ended and grant.role in LIVE_ROLES and grant.role not in after_end:
        raise http_error(410, "lesson_ended", "this lesson has ended; its links no longer work")
    if grant.role is Role.CLASSROOM and grant.generation != lesson.link_generation:
        raise http_error(
            401,
            "token_revoked",
            "the teacher replaced this classroom link with a new one; ask for the new link",
            _CHALLENGE,
        )
    if grant.course_link is not None and not _link_stands(request, grant, lesson):
        raise http_error(
            401,
            "token_revoked",
            "this classroom's course link was revoked or replaced; ask the teacher for the new "
            "link",
            _CHALLENGE,
        )
    if grant.role is Role.ORIGIN and grant.generation != lesson.origin_generation:
        raise http_error(
            401,
            "token_revoked",
            "the teacher replaced this teacher link with a new one",
            _CHALLENGE,
        )
    return grant


def _link_stands(request: web.Request, grant: Grant, lesson: Lesson) -> bool:
    """Whether the course link a classroom token was handed out on still stands, for a lesson
    of that course."""
    link = grant.course_link
    courses = request.app.get(COURSES)
    return (
        link is not None
        and courses is not None
        and lesson.course_id == link.course_id
        and courses.stands(link)
    )


def fixed_name(grant: Grant) -> str | None:
    """The classroom's name a token fixes (handed out on one receiving classroom's own course
    link), or None where the classroom gives its own."""
    if grant.course_link is None or not grant.course_link.classroom:
        return None
    return grant.course_link.classroom


def actor_of(request: web.Request) -> str:
    """Who the caller is, for the audit log: an account name, "admin", or the kind of lesson
    token used ("origin token"); never the credential itself."""
    account = account_of(request)
    if account is not None:
        return account.name
    credential = credential_of(request)
    if credential is not None:
        try:
            return f"{request.app[AUTHORITY].verify(credential).role.value} token"
        except TokenError:
            pass
    return "anonymous"
