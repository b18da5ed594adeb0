"""Joining through any server of a lesson directory: a classroom's join link (the page or its
WHEP offer) is answered by the server that should carry it.

- **At the lesson's home** (the server holding it as origin), a classroom is sent (307) to an
  edge of its region (``?region=`` on its link) when one is registered; without one, to the
  least loaded edge once the home carries ``spill_load`` sessions; else it stays at home.
  An edge's own pull is never sent away, nor is anybody while the directory cannot be read.
- **At an edge** (``--edge``), a classroom of a lesson it does not hold has its own join token
  vouched for by the lesson's home, which the directory names (never an address from the
  request), over a credential made with the shared ``--cluster-secret``; the home answers
  with a classroom token for the edge's own pull, and the edge relays the lesson under the
  same id (its ``source_url``, as an edge lesson made by hand). The home is asked again at
  each join (so a replaced or ended link stops working there too), at most once per token
  in ``RECHECK_S``.
- **At a server that is neither**, a classroom of a lesson held elsewhere is sent to its home.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web

from .auth import bearer, credential_of, grant_of
from .cluster_credentials import ClusterCredentialError, ClusterCredentials
from .contracts import Directory, DirectoryUnavailable, Grant, Lesson, Role, ServerEntry
from .errors import http_error, json_object
from .json_answers import json_response
from .keys import AUTHORITY, LESSONS, STORE
from .source_url import SourceUrl, SourceUrlError
from .vouched_tokens import VouchedTokens

logger = logging.getLogger(__name__)

VOUCH_PATH = "/api/cluster/vouch"
ASK_TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 16 * 1024
RECHECK_S = 10.0  # a token the home vouched for is not asked about again this soon
MAX_REGION = 64
MAX_LOCKS = 4096
# what a home's refusal may be passed on as; anything else is the home failing (502)
PASSED_ON = frozenset({401, 403, 404, 409, 410})


class Cluster:
    """This server's part in the directory: where joins go, and vouching for classrooms."""

    def __init__(
        self,
        directory: Directory,
        credentials: ClusterCredentials,
        vouched: VouchedTokens,
        *,
        edge: bool,
        spill_load: int,
    ) -> None:
        self.directory = directory
        self.credentials = credentials
        self.vouched = vouched
        self.edge = edge
        self.spill_load = spill_load
        self._checked: dict[bytes, float] = {}  # token digest → when its home last vouched
        self._locks: dict[str, asyncio.Lock] = {}
        self._http: aiohttp.ClientSession | None = None

    @property
    def pull_name(self) -> str:
        """The name this server's pulls go by among a home's classrooms."""
        return edge_name(self.directory.me.id)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    # at the lesson's home

    async def place(self, request: web.Request, lesson: Lesson, name: str | None) -> None:
        """Raise a 307 to the server that should carry this classroom, unless it is here."""
        region = _region(request)
        try:
            servers = await self.directory.servers()
        except DirectoryUnavailable:
            return  # the directory cannot say: the home carries everybody meanwhile
        if name is not None and name in {edge_name(s.id) for s in servers}:
            return  # an edge's own pull of this lesson
        target = choose(self.directory.me, servers, region, self.spill_load)
        if target.id != self.directory.me.id:
            logger.info(
                "lesson %s: a classroom%s sent to %s (load %d; here %d)",
                lesson.id,
                f" of region {region}" if region else "",
                target.id,
                target.load,
                self.directory.me.load,
            )
            raise _redirect(target, request)

    # at an edge

    async def relay(self, request: web.Request, lesson_id: str) -> None:
        """Make sure a lesson held elsewhere is relayed here and the caller's classroom token
        is vouched for by its home; the home's refusals are passed on as they are."""
        token = credential_of(request)
        if token is None:
            raise http_error(
                401,
                "unauthorized",
                "a classroom token of the lesson is required",
                {"WWW-Authenticate": 'Bearer realm="syncclass"'},
            )
        key = _digest(token)
        lock = self._lock(lesson_id)
        async with lock:
            if time.monotonic() - self._checked.get(key, -RECHECK_S) < RECHECK_S:
                if request.app[STORE].get(lesson_id) is not None:
                    return
            try:
                home = await self.directory.home_of(lesson_id)
            except DirectoryUnavailable:
                if self._still_vouched(request, token, lesson_id):
                    return  # known already: the classroom comes back while Redis is away
                raise http_error(
                    503,
                    "directory_unavailable",
                    "the lesson directory cannot be read now; try again shortly",
                    {"Retry-After": "2"},
                ) from None
            if home is None or home.id == self.directory.me.id:
                raise http_error(
                    404,
                    "no_such_lesson",
                    f"no server of the lesson directory holds a lesson {lesson_id!r}",
                )
            try:
                answer = await self._ask_home(home, lesson_id, token)
            except web.HTTPException as exc:
                if exc.status >= 500 and self._still_vouched(request, token, lesson_id):
                    return  # the home is away for a moment; its token was good a moment ago
                raise
            lesson = request.app[STORE].get(lesson_id)
            if lesson is None:
                await self._start_relay(request, home, lesson_id, answer)
            self.vouched.vouch(
                token, Grant(lesson_id, Role.CLASSROOM, answer["expires_at"], generation=0)
            )
            self._checked[key] = time.monotonic()
            if len(self._checked) > 10 * MAX_LOCKS:
                self._checked.clear()

    def _still_vouched(self, request: web.Request, token: str, lesson_id: str) -> bool:
        if request.app[STORE].get(lesson_id) is None:
            return False
        try:
            return self.vouched.verify(token).lesson_id == lesson_id
        except Exception:
            return False

    def _lock(self, lesson_id: str) -> asyncio.Lock:
        lock = self._locks.get(lesson_id)
        if lock is None:
            if len(self._locks) >= MAX_LOCKS:
                for held in [k for k, v in self._locks.items() if not v.locked()]:
                    del self._locks[held]
            lock = self._locks[lesson_id] = asyncio.Lock()
        return lock

    async def _ask_home(self, home: ServerEntry, lesson_id: str, token: str) -> dict[str, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT_S))
        credential = self.credentials.mint(self.directory.me.id, lesson_id)
        body = {"lesson": lesson_id, "token": token}
        try:
            async with self._http.post(
                home.url + VOUCH_PATH,
                json=body,
                headers={"Authorization": f"Bearer {credential}"},
                allow_redirects=False,
            ) as response:
                raw = await response.content.read(MAX_ANSWER_BYTES + 1)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.warning(
                "lesson %s: its home %s cannot be asked (%s)",
                lesson_id,
                home.id,
                type(exc).__name__,
            )
            raise http_error(
                502, "home_unreachable", "the server holding this lesson cannot be reached now"
            ) from None
        try:
            answer = json.loads(raw) if len(raw) <= MAX_ANSWER_BYTES else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if status == 200 and _good_vouch(answer):
            return answer
        if status in PASSED_ON and isinstance(answer.get("error"), str):
            message = answer.get("message")
            raise http_error(
                status,
                answer["error"][:64],
                message[:300] if isinstance(message, str) else "refused by the lesson's home",
            )
        logger.warning("lesson %s: its home %s answered %d", lesson_id, home.id, status)
        raise http_error(
            502, "home_failed", "the server holding this lesson could not vouch for this link"
        )

    async def _start_relay(
        self, request: web.Request, home: ServerEntry, lesson_id: str, answer: dict[str, Any]
    ) -> None:
        parts = urlsplit(home.url)
        try:
            source = SourceUrl(
                f"{parts.scheme}://{quote(self.pull_name, safe='')}:{answer['pull_token']}"
                f"@{parts.netloc}/whep/{lesson_id}"
            )
        except SourceUrlError as exc:
            logger.warning("lesson %s: cannot relay it from %s: %s", lesson_id, home.id, exc)
            raise http_error(
                502, "home_failed", "the lesson's home gave an unusable answer"
            ) from None
        store = request.app[STORE]
        lesson = store.create(answer["title"], answer["max_classrooms"], False, lesson_id=lesson_id)
        lesson = store.set_source(lesson.id, source)
        logger.info(
            "lesson %s: relayed here from its home %s, for its classrooms", lesson_id, home.id
        )
        await request.app[LESSONS].pull(lesson)
        self.directory.changed()


def edge_name(server_id: str) -> str:
    return f"edge {server_id}"


def choose(
    home: ServerEntry, servers: list[ServerEntry], region: str | None, spill_load: int
) -> ServerEntry:
    """Where a classroom of a lesson held at ``home`` should join: an edge of its region
    (the least loaded), else the home unless it carries ``spill_load`` sessions and some
    edge carries fewer."""
    edges = [s for s in servers if s.edge and s.id != home.id]
    if region is not None:
        near = [s for s in edges if s.region == region]
        if near:
            return min(near, key=lambda s: (s.load, s.id))
        if home.region == region:
            return home
    if home.load >= spill_load and edges:
        lightest = min(edges, key=lambda s: (s.load, s.id))
        if lightest.load < home.load:
            return lightest
    return home


def _region(request: web.Request) -> str | None:
    region = request.query.get("region")
    if region is None or region == "":
        return None
    if len(region) > MAX_REGION or not all(c.isalnum() or c in "-_." for c in region):
        raise http_error(
            400, "bad_region", "region must be 1 to 64 letters, digits, '-', '_' or '.'"
        )
    return region


def _redirect(target: ServerEntry, request: web.Request) -> web.HTTPException:
    """307: the same request (a WHEP offer with its body, as RFC 9725 §4.5 lets a client
    follow) to the same path and query at ``target``."""
    location = target.url + request.rel_url.path_qs
    return http_error(
        307,
        "moved",
        f"this classroom joins at {target.url}",
        {"Location": location},
        {"server": target.url},
    )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _good_vouch(answer: dict[str, Any]) -> bool:
    title, cap = answer.get("title"), answer.get("max_classrooms")
    expiry, pull = answer.get("expires_at"), answer.get("pull_token")
    return (
        isinstance(title, str)
        and 0 < len(title) <= 200
        and isinstance(cap, int)
        and not isinstance(cap, bool)
        and 1 <= cap <= 1000
        and isinstance(expiry, int | float)
        and not isinstance(expiry, bool)
        and isinstance(pull, str)
        and 0 < len(pull) <= 256
    )


# the home's side: vouching for a classroom token asked about by an edge


async def vouch(request: web.Request) -> web.Response:
    """``POST /api/cluster/vouch`` from another server of the directory, with a credential
    made with the shared secret for this lesson: whether a classroom's token opens the
    lesson here, and if so a classroom token for that server's own pull."""
    cluster = request.app[CLUSTER]
    credential = bearer(request)
    body = await json_object(request)
    lesson_id, token = body.get("lesson"), body.get("token")
    if not isinstance(lesson_id, str) or not 0 < len(lesson_id) <= 64:
        raise http_error(400, "bad_lesson", "lesson must be a lesson's id")
    if not isinstance(token, str) or not 0 < len(token) <= 2048:
        raise http_error(400, "bad_token", "token must be the classroom's token")
    try:
        caller = cluster.credentials.check(credential, lesson_id)
    except ClusterCredentialError as exc:
        logger.warning("lesson %s: a cluster credential refused: %s", lesson_id, exc)
        raise http_error(401, "bad_cluster_credential", str(exc)) from None
    lesson = request.app[STORE].get(lesson_id)
    if lesson is None or (lesson.source is not None and lesson.source.kind == "whep"):
        raise http_error(404, "no_such_lesson", f"this server holds no lesson {lesson_id!r}")
    grant = grant_of(request, token, lesson_id, {Role.CLASSROOM})
    pull_token = request.app[AUTHORITY].issue(lesson_id, Role.CLASSROOM, lesson.link_generation)
    logger.info("lesson %s: a classroom's link vouched for to %s", lesson_id, caller.server)
    return json_response(
        {
            "lesson": lesson_id,
            "title": lesson.title,
            "max_classrooms": lesson.max_classrooms,
            "expires_at": grant.expires_at,
            "pull_token": pull_token,
        }
    )


# what the join handlers call


async def before_join(request: web.Request, lesson_id: str, name: str | None) -> None:
    """Before a classroom's join (its page, its WHEP offer) is answered here: sent to the
    server that should carry it (307), or its lesson relayed here from its home."""
    cluster = request.app.get(CLUSTER)
    if cluster is None:
        return
    lesson = request.app[STORE].get(lesson_id)
    if lesson is not None and not _relayed_from_home(lesson):
        if _classroom_grant(request, lesson_id) is not None:
            await cluster.place(request, lesson, name)
        return
    if cluster.edge:
        await cluster.relay(request, lesson_id)
        return
    if lesson is None:
        try:
            home = await cluster.directory.home_of(lesson_id)
        except DirectoryUnavailable:
            return  # the handler answers 404 as a server alone does
        if home is not None and home.id != cluster.directory.me.id:
            raise _redirect(home, request)


def _relayed_from_home(lesson: Lesson) -> bool:
    """A lesson this edge relays for the directory: pulled over WHEP from a lesson of the
    same id (an edge lesson made by hand has an id of its own)."""
    source = lesson.source
    return (
        source is not None
        and source.kind == "whep"
        and source.without_password.rstrip("/").endswith(f"/whep/{lesson.id}")
    )


def _classroom_grant(request: web.Request, lesson_id: str) -> Grant | None:
    token = credential_of(request)
    if token is None:
        return None
    try:
        return grant_of(request, token, lesson_id, {Role.CLASSROOM})
    except web.HTTPException:
        return None  # the handler answers it as it always has


def wake(app: web.Application) -> None:
    """Lessons were created or ended: the directory registers them now."""
    cluster = app.get(CLUSTER)
    if cluster is not None:
        cluster.directory.changed()


CLUSTER = web.AppKey("cluster", Cluster)


def add_routes(app: web.Application) -> None:
    app.router.add_post(VOUCH_PATH, vouch)
