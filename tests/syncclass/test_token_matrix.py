"""Every endpoint × every way a credential can be wrong.

No credential, garbage, another lesson's token, a token of the wrong role, an expired or
tampered one, a revoked one (a classroom link the teacher replaced, a token of a lesson that
has ended, the key of a removed account), another teacher's key, a teacher's key where the
admin's is needed: each is refused with 401, 403 or 410 and a JSON error, and leaves the
server as it was (lessons, links, sessions, peers, accounts, audit log, recordings), while a
lesson with a teacher and a classroom goes on beside.

Statuses: 401 when the credential proves nothing (missing, malformed, tampered, expired, a
replaced link, a removed account); 403 when it is valid but not for this (another lesson,
another role, another teacher, not the admin); 410 when it belonged to this lesson and the
lesson has ended (clearer than 401: the link was right, the lesson is over). What the end
leaves readable by the lesson's origin token (its report, its recording) is listed per route
in ``after_end``.

The routes are read from the application itself: a route added without an entry here (or in
the short list of public ones) fails ``test_every_route_is_in_the_matrix``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from signaling.contracts import Role
from signaling.keys import STORE
from syncclass.app import create_app
from syncclass.config import Config
from tests.server import Server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import Classroom, Publisher, whep_subscribe, whip_publish

from .credentials import add_teacher, admin_key, create_lesson, expired, mint, sdp_offer, tamper

ORIGIN, CLASSROOM, REPLAY = Role.ORIGIN, Role.CLASSROOM, Role.REPLAY
TOKEN_ROLES = (ORIGIN, CLASSROOM, REPLAY)

# Anyone may call these: the pages and their files hold code, not data (the data comes from
# the API, with a credential); the library lists public recordings only; metrics are counts;
# the network check answers with a throwaway data channel and is rate-limited per address.
PUBLIC = {
    ("GET", "/"),
    ("GET", "/lessons/{lesson_id}/teach"),
    ("GET", "/lessons/{lesson_id}/join"),
    ("GET", "/lessons/{lesson_id}/report"),
    ("GET", "/live"),
    ("GET", "/recordings"),
    ("GET", "/static"),
    ("GET", "/api/recordings"),
    ("GET", "/metrics"),
    ("GET", "/check"),
    ("POST", "/api/check"),
    ("GET", "/api/check"),
    # what a WHIP/WHEP endpoint accepts, to anyone (CORS preflights carry no credential); a
    # token given with it must be the lesson's, and only then are the TURN servers told
    # (tests/e2e/test_turn.py)
    ("OPTIONS", "/whip/{lesson_id}"),
    ("OPTIONS", "/whep/{lesson_id}"),
    ("GET", "/courses/{course_id}/room"),
}

# Routes of a course, not of one lesson: the course's teacher's key, or a course link (a token
# of its own kind); every wrong credential for each is tried by
# tests/signaling/test_courses_api.py::test_every_course_route_refuses_wrong_credentials.
COURSE_ROUTES = {
    ("POST", "/api/courses"),
    ("GET", "/api/courses"),
    ("GET", "/api/courses/{course_id}"),
    ("PATCH", "/api/courses/{course_id}"),
    ("POST", "/api/courses/{course_id}/links/replace"),
    ("POST", "/api/courses/{course_id}/links/revoke"),
    ("POST", "/api/courses/{course_id}/lessons"),
    ("DELETE", "/api/courses/{course_id}/lessons/{lesson_id}"),
    ("GET", "/api/courses/{course_id}/room"),
    ("GET", "/api/courses/{course_id}/calendar.ics"),
    ("GET", "/api/courses/{course_id}/recordings"),
    ("GET", "/api/timetable"),
}


@dataclass(frozen=True)
class Entry:
    """How to call one route, and who may.

    ``keys``: "owner" (the lesson's teacher or the admin), "account" (any teacher or the
    admin), "admin", or None (lesson tokens only). ``roles``: the lesson tokens accepted;
    ``after_end``: those still accepted once the lesson has ended. ``query``: the route also
    reads ``?token=`` (for links and media elements)."""

    path: str
    keys: str | None
    roles: frozenset[Role] = frozenset()
    after_end: frozenset[Role] = frozenset()
    body: Any = None
    query: bool = False
    websocket: bool = False


def _roles(*roles: Role) -> frozenset[Role]:
    return frozenset(roles)


LESSON = "/api/lessons/{lesson}"
MATRIX: dict[tuple[str, str], list[Entry]] = {
    ("POST", "/api/lessons"): [Entry("/api/lessons", "account", body={"title": "Intruder"})],
    ("GET", "/api/lessons"): [Entry("/api/lessons", "account")],
    ("GET", "/api/lessons/{lesson_id}"): [
        Entry(LESSON, "owner", _roles(ORIGIN, CLASSROOM), after_end=_roles(ORIGIN))
    ],
    ("PATCH", "/api/lessons/{lesson_id}"): [
        Entry(LESSON, "owner", _roles(ORIGIN), body={"source_url": None})
    ],
    ("POST", "/api/lessons/{lesson_id}/end"): [
        Entry(LESSON + "/end", "owner", _roles(ORIGIN), after_end=_roles(ORIGIN))
    ],
    ("POST", "/api/lessons/{lesson_id}/rotate"): [
        Entry(LESSON + "/rotate", "owner", _roles(ORIGIN))
    ],
    ("GET", "/api/lessons/{lesson_id}/events"): [
        Entry(
            LESSON + "/events",
            "owner",
            _roles(ORIGIN, CLASSROOM),
            # an ended lesson's own tokens are told it ended, then let go (see
            # test_link_rotation_and_end)
            after_end=_roles(ORIGIN, CLASSROOM),
            websocket=True,
        )
    ],
    ("GET", "/api/lessons/{lesson_id}/attendance"): [
        Entry(LESSON + "/attendance", "owner", _roles(ORIGIN), after_end=_roles(ORIGIN))
    ],
    ("GET", "/api/lessons/{lesson_id}/attendance.csv"): [
        Entry(LESSON + "/attendance.csv", "owner", _roles(ORIGIN), after_end=_roles(ORIGIN))
    ],
    ("GET", "/api/lessons/{lesson_id}/report"): [
        Entry(LESSON + "/report", "owner", _roles(ORIGIN), after_end=_roles(ORIGIN))
    ],
    ("GET", "/api/lessons/{lesson_id}/catch-up"): [
        Entry(LESSON + "/catch-up", None, _roles(ORIGIN, CLASSROOM), query=True)
    ],
    ("GET", "/api/lessons/{lesson_id}/catch-up/{source}"): [
        Entry(LESSON + "/catch-up/camera?offset=0", None, _roles(ORIGIN, CLASSROOM), query=True)
    ],
    ("GET", "/api/live"): [Entry("/api/live", "account")],
    ("GET", "/api/status"): [Entry("/api/status", "admin")],
    ("POST", "/whip/{lesson_id}"): [
        Entry("/whip/{lesson}", None, _roles(ORIGIN), body="publish"),
        Entry("/whip/{lesson}?source=feed&name=Room%201", None, _roles(CLASSROOM), body="publish"),
    ],
    ("POST", "/whep/{lesson_id}"): [
        Entry("/whep/{lesson}", None, _roles(ORIGIN, CLASSROOM), body="receive"),
        Entry("/whep/{lesson}?source=feed:Room%201", None, _roles(ORIGIN), body="receive"),
    ],
    ("DELETE", "/whip/{lesson_id}/{session_id}"): [
        Entry("/whip/{lesson}/{whip_session}", None, _roles(ORIGIN, CLASSROOM))
    ],
    ("DELETE", "/whep/{lesson_id}/{session_id}"): [
        Entry("/whep/{lesson}/{whep_session}", None, _roles(ORIGIN, CLASSROOM))
    ],
    ("GET", "/api/recordings/{lesson_id}"): [
        Entry(
            "/api/recordings/{lesson}",
            "owner",
            _roles(ORIGIN, REPLAY),
            after_end=_roles(ORIGIN),
            query=True,
        )
    ],
    ("PATCH", "/api/recordings/{lesson_id}"): [
        Entry(
            "/api/recordings/{lesson}",
            "owner",
            _roles(ORIGIN),
            after_end=_roles(ORIGIN),
            body={"public": True},
        )
    ],
    ("DELETE", "/api/recordings/{lesson_id}"): [Entry("/api/recordings/{lesson}", "owner")],
    ("POST", "/api/recordings/{lesson_id}/link"): [
        Entry("/api/recordings/{lesson}/link", "owner", _roles(ORIGIN), after_end=_roles(ORIGIN))
    ],
    ("GET", "/recordings/{lesson_id}/{name}"): [
        Entry(
            "/recordings/{lesson}/camera.webm",
            "owner",
            _roles(ORIGIN, REPLAY),
            after_end=_roles(ORIGIN),
            query=True,
        )
    ],
    ("POST", "/api/teachers"): [Entry("/api/teachers", "admin", body={"name": "intruder"})],
    ("GET", "/api/teachers"): [Entry("/api/teachers", "admin")],
    ("DELETE", "/api/teachers/{name}"): [Entry("/api/teachers/other", "admin")],
    ("GET", "/api/audit"): [Entry("/api/audit", "admin")],
}


def _app_routes(data_dir: Path) -> set[tuple[str, str]]:
    """(method, path template) of every route the server's application has; HEAD is the GET
    handler answering without a body, so it goes with its GET."""
    config = Config(data_dir=data_dir, teacher_key="t" * 24, admin_key="a" * 24)
    app = create_app(config)
    try:
        return {
            (route.method, resource.canonical)
            for resource in app.router.resources()
            for route in resource
            if route.method != "HEAD"
        }
    finally:
        app[STORE].close()


def test_every_route_is_in_the_matrix(tmp_path: Path) -> None:
    routes = _app_routes(tmp_path)
    missing = routes - set(MATRIX) - PUBLIC - COURSE_ROUTES
    assert not missing, f"routes without a token matrix entry: {sorted(missing)}"
    stale = (set(MATRIX) | PUBLIC) - routes
    assert not stale, f"matrix entries for routes that do not exist: {sorted(stale)}"
    assert not set(MATRIX) & PUBLIC


# ---------------------------------------------------------------------------------------------
# The world the matrix runs against


@dataclass
class World:
    server: Server
    teacher: str  # the built-in account's key: owns lessons A and C
    admin: str
    other: str  # another teacher's key: owns lesson B
    gone: str  # the key of a removed account
    lessons: dict[str, dict[str, Any]]  # "A" (live, link replaced once), "B", "C" (ended)
    tokens: dict[tuple[str, Role], str]
    replaced: str  # lesson A's classroom token from before the link was replaced
    whip_session: str
    whep_session: str
    offers: dict[str, str]

    def path(self, entry: Entry, lesson: str) -> str:
        return entry.path.format(
            lesson=self.lessons[lesson]["id"],
            whip_session=self.whip_session,
            whep_session=self.whep_session,
        )


@dataclass(frozen=True)
class Case:
    what: str
    lesson: str  # which lesson's path the request goes to
    credential: str | None
    status: int
    code: str | None = None  # the error code the answer must carry, where it is telling


def cases(entry: Entry, world: World) -> Iterator[Case]:
    tokens = world.tokens
    yield Case("no credential", "A", None, 401)
    yield Case("garbage", "A", "not-a-token", 401)
    yield Case("tampered teacher key", "A", tamper(world.teacher), 401)
    yield Case("removed account's key", "A", world.gone, 401)
    if entry.keys == "owner":
        yield Case("another teacher's key", "A", world.other, 403, "not_your_lesson")
    elif entry.keys == "admin":
        yield Case("a teacher's key", "A", world.teacher, 403, "admin_only")
        yield Case("another teacher's key", "A", world.other, 403, "admin_only")
    elif entry.keys is None:
        # a key is not a lesson token: the lesson's own teacher is told so, another refused
        yield Case("the teacher's key", "A", world.teacher, 401, "invalid_token")
        yield Case("another teacher's key", "A", world.other, 403, "not_your_lesson")
    for role in TOKEN_ROLES:
        token = tokens["A", role]
        if role in entry.roles:
            yield Case(f"tampered {role}", "A", tamper(token), 401, "invalid_token")
            generation = world.lessons["A"]["generation"] if role is CLASSROOM else 0
            lesson_id = world.lessons["A"]["id"]
            yield Case(
                f"expired {role}",
                "A",
                expired(world.server, lesson_id, role, generation),
                401,
                "invalid_token",
            )
            yield Case(f"{role} of another lesson", "A", tokens["B", role], 403)
        else:
            yield Case(f"{role} (wrong role)", "A", token, 403 if entry.roles else 401)
    if CLASSROOM in entry.roles:
        yield Case("replaced classroom link", "A", world.replaced, 401, "token_revoked")
    for role in sorted(entry.roles & {ORIGIN, CLASSROOM} - entry.after_end):
        yield Case(f"{role} of the ended lesson", "C", tokens["C", role], 410, "lesson_ended")


# ---------------------------------------------------------------------------------------------
# Requests


async def _request(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    credential: str | None,
    body: Any,
    offers: dict[str, str],
    *,
    in_query: bool = False,
) -> tuple[int, dict[str, str], str]:
    headers: dict[str, str] = {}
    if credential is not None and not in_query:
        headers["Authorization"] = f"Bearer {credential}"
    if credential is not None and in_query:
        url += ("&" if "?" in url else "?") + f"token={quote(credential, safe='')}"
    data = None
    if isinstance(body, str):
        data = offers[body].encode()
        headers["Content-Type"] = "application/sdp"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    async with http.request(method, url, data=data, headers=headers) as response:
        return response.status, dict(response.headers), await response.text()


def _problem(case: Case, how: str, status: int, headers: dict[str, str], text: str) -> str | None:
    if status != case.status:
        return f"{case.what} ({how}): {status} instead of {case.status}: {text[:200]}"
    try:
        error = json.loads(text).get("error")
    except ValueError:
        return f"{case.what} ({how}): the {status} is not a JSON error: {text[:200]}"
    if not error or case.code is not None and error != case.code:
        return f"{case.what} ({how}): error {error!r} instead of {case.code!r}"
    if status == 401 and "Bearer" not in headers.get("WWW-Authenticate", ""):
        return f"{case.what} ({how}): a 401 without a Bearer challenge"
    return None


async def _websocket(http: aiohttp.ClientSession, url: str, case: Case, how: str) -> str | None:
    """Refused before the upgrade with ``case.status``, or, with the token in the first
    message, closed with 4000 + status."""
    ws_url = url.replace("http://", "ws://", 1)
    if how == "message":
        async with http.ws_connect(ws_url) as ws:
            await ws.send_json(
                {"type": "ping"}
                if case.credential is None
                else {"type": "auth", "token": case.credential}
            )
            told: list[str] = []
            while True:
                try:
                    msg = await ws.receive(timeout=3)
                except TimeoutError:
                    return f"{case.what} (first message): let in, told {told}"
                if msg.type is aiohttp.WSMsgType.TEXT:
                    told.append(json.loads(msg.data).get("type"))
                    continue
                break
            if msg.type is not aiohttp.WSMsgType.CLOSE or msg.data != 4000 + case.status:
                return f"{case.what} (first message): closed with {msg.type} {msg.data}"
            if told != ["error"]:
                return f"{case.what} (first message): was told {told} before the close"
            return None
    headers = {}
    if how == "header":
        headers["Authorization"] = f"Bearer {case.credential}"
    else:
        ws_url += f"?token={quote(case.credential or '', safe='')}"
    try:
        async with http.ws_connect(ws_url, headers=headers) as ws:
            await ws.close()
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status != case.status:
            return f"{case.what} ({how}): {exc.status} instead of {case.status}"
        return None
    return f"{case.what} ({how}): the socket was opened"


# ---------------------------------------------------------------------------------------------
# What must not change


async def _get(http: aiohttp.ClientSession, server: Server, key: str, path: str) -> Any:
    status, _, text = await _request(http, "GET", server.url + path, key, None, {})
    assert status == 200, (path, text)
    return json.loads(text)


async def _state(http: aiohttp.ClientSession, world: World) -> dict[str, Any]:
    """What a refused request must not change, as the admin sees it."""
    server, admin = world.server, world.admin
    status = await _get(http, server, admin, "/api/status")
    lessons = await _get(http, server, admin, "/api/lessons")
    teachers = await _get(http, server, admin, "/api/teachers")
    audit = await _get(http, server, admin, "/api/audit")
    recordings = await _get(http, server, admin, "/api/recordings")
    return {
        "status": {
            k: status[k] for k in ("routers", "peers", "producers", "consumers", "sessions")
        },
        "lessons": sorted(
            (
                lesson["id"],
                lesson["title"],
                lesson["state"],
                lesson["owner"],
                lesson["classrooms"],
                tuple(lesson["origin_sources"]),
                lesson["ended_at"],
            )
            for lesson in lessons["lessons"]
        ),
        "teachers": sorted(t["name"] for t in teachers["teachers"]),
        "audit": audit["entries"],
        "recordings": sorted((r["lesson_id"], r["public"]) for r in recordings["recordings"]),
    }


# ---------------------------------------------------------------------------------------------


async def _world(server: Server, http: aiohttp.ClientSession) -> tuple[World, Publisher, Classroom]:
    admin = admin_key(server)
    other = await asyncio.to_thread(add_teacher, server, "other")
    gone = await asyncio.to_thread(add_teacher, server, "gone")
    status, _ = await asyncio.to_thread(server.request, "DELETE", "/api/teachers/gone", token=admin)
    assert status == 200
    a = await asyncio.to_thread(create_lesson, server, server.teacher_key, "Lesson A")
    b = await asyncio.to_thread(create_lesson, server, other, "Lesson B")
    c = await asyncio.to_thread(create_lesson, server, server.teacher_key, "Lesson C")
    replaced = a["whep_token"]
    status, a = await asyncio.to_thread(
        server.request, "POST", f"/api/lessons/{a['id']}/rotate", token=server.teacher_key
    )
    assert status == 200, a
    a["generation"] = 1
    status, _ = await asyncio.to_thread(
        server.request, "POST", f"/api/lessons/{c['id']}/end", token=server.teacher_key
    )
    assert status == 200
    publisher = await whip_publish(
        a["whip_url"],
        a["whip_token"],
        video=encode_vp8_clip(2.0, fps=15, gop=15),
        audio=encode_opus_clip(2.0),
    )
    await publisher.wait_connected()
    classroom = await whep_subscribe(a["whep_url"], a["whep_token"], name="Room 1")
    await classroom.wait_connected()
    for _ in range(100):  # the recording of A starts with the teacher's media
        lesson = await _get(http, server, admin, f"/api/lessons/{a['id']}")
        if lesson["recording"] is not None:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("lesson A is not being recorded")
    tokens: dict[tuple[str, Role], str] = {}
    for name, lesson in (("A", a), ("B", b), ("C", c)):
        tokens[name, ORIGIN] = lesson["whip_token"]
        tokens[name, CLASSROOM] = lesson["whep_token"]
        tokens[name, REPLAY] = mint(server, lesson["id"], REPLAY)
    assert publisher.session_url and classroom.session_url
    world = World(
        server=server,
        teacher=server.teacher_key,
        admin=admin,
        other=other,
        gone=gone,
        lessons={"A": a, "B": b, "C": c},
        tokens=tokens,
        replaced=replaced,
        whip_session=publisher.session_url.rsplit("/", 1)[1],
        whep_session=classroom.session_url.rsplit("/", 1)[1],
        offers={"publish": await sdp_offer("publish"), "receive": await sdp_offer("receive")},
    )
    return world, publisher, classroom


async def test_token_matrix(server: Server) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        world, publisher, classroom = await _world(server, http)
        try:
            before = await _state(http, world)
            problems: list[str] = []
            tried = 0
            for (method, template), entries in MATRIX.items():
                for entry in entries:
                    for case in cases(entry, world):
                        url = world.server.url + world.path(entry, case.lesson)
                        if entry.websocket:
                            ways = (
                                ("message",)
                                if case.credential is None
                                else ("query", "header", "message")
                            )
                            for how in ways:
                                tried += 1
                                problem = await _websocket(http, url, case, how)
                                if problem:
                                    problems.append(f"{method} {template}: {problem}")
                            continue
                        ways = (
                            ("header", "query") if entry.query and case.credential else ("header",)
                        )
                        for how in ways:
                            tried += 1
                            status, headers, text = await _request(
                                http,
                                method,
                                url,
                                case.credential,
                                entry.body,
                                world.offers,
                                in_query=how == "query",
                            )
                            problem = _problem(case, how, status, headers, text)
                            if problem:
                                problems.append(f"{method} {entry.path}: {problem}")
            after = await _state(http, world)
            assert not problems, f"{len(problems)} of {tried} refusals wrong:\n" + "\n".join(
                problems
            )
            assert tried > 300
            assert after == before
            # the lesson beside went on: both peers still connected, the current link works
            assert publisher.pc.connectionState == "connected"
            assert classroom.pc.connectionState == "connected"
            a = world.lessons["A"]
            status, _, _ = await _request(
                http, "GET", f"{server.url}/api/lessons/{a['id']}", a["whep_token"], None, {}
            )
            assert status == 200
        finally:
            await classroom.close()
            await publisher.close()
